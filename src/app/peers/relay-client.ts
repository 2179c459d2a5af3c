import { io, type Socket } from 'socket.io-client';
import {
  MAX_BRIDGE_FETCHES_PER_SOCKET,
  RELAY_PATH,
  RelayEvent,
  ValidationError,
  parseAdvertOut,
  parseBridgeFetchReply,
  parseBridgeReadOut,
  parsePeerLeft,
  parsePeersOut,
  parseRelayError,
  parseSignalOut,
  parseWelcome,
  type AdvertOut,
  type BlockHash,
  type BridgeErrorCode,
  type BridgeReadOut,
  type BridgeReadReply,
  type Cursor,
  type NamespaceId,
  type PeerId,
  type PeerLeft,
  type PeersOut,
  type RelayError,
  type SignalData,
  type SignalOut,
  type Welcome,
} from '../../protocol/index.ts';

export interface RelayClientEvents {
  welcome(welcome: Welcome): void;
  peers(list: PeersOut): void;
  advert(advert: AdvertOut): void;
  peerLeft(left: PeerLeft): void;
  signal(signal: SignalOut): void;
  relayError(error: RelayError): void;
  /** The socket dropped; socket.io reconnects by itself and a new `welcome` follows. */
  disconnected(reason: string): void;
  /** The bridge reads part of a block this device holds, for a LAN peer. */
  bridgeRead?(read: BridgeReadOut): Promise<BridgeReadReply>;
}

/** A block fetch through the LAN bridge failed; `code` is the bridge's (or `timeout`). */
export class BridgeFetchError extends Error {
  override readonly name = 'BridgeFetchError';
  constructor(
    readonly code: BridgeErrorCode | 'timeout' | 'malformed',
    message: string,
  ) {
    super(message);
  }
}

/** A bridge fetch carries one block (≤ 4 MiB) from a LAN peer through the server. */
const BRIDGE_FETCH_TIMEOUT_MS = 60_000;

/**
 * The page's connection to the relay: adverts and WebRTC signalling. Every event the relay
 * sends is validated before anyone sees it; an invalid one is dropped with a console warning.
 */
/** A refused handshake is retried only when the relay says the refusal is temporary. */
const RETRYABLE_REFUSALS = new Set(['unavailable', 'internal']);
const RETRY_FIRST_MS = 2_000;
const RETRY_MAX_MS = 30_000;

export class RelayClient {
  private readonly socket: Socket;
  private retryMs = RETRY_FIRST_MS;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  /** Bridge fetches in flight, and those waiting for a slot (the relay allows 8 per socket). */
  private bridgeFetches = 0;
  private readonly bridgeQueue: Array<() => void> = [];

  constructor(origin: string, tokens: string[], label: string, events: RelayClientEvents) {
    this.socket = io(origin, { path: RELAY_PATH, auth: { tokens, label }, transports: ['websocket'] });
    const on = <T>(name: string, parse: (value: unknown) => T, handle: (value: T) => void) => {
      this.socket.on(name, (payload: unknown) => {
        let parsed: T;
        try {
          parsed = parse(payload);
        } catch (error) {
          if (!(error instanceof ValidationError)) throw error;
          console.warn(`nearsync: dropped a malformed "${name}" event from the relay: ${error.message}`);
          return;
        }
        handle(parsed);
      });
    };
    on(RelayEvent.welcome, parseWelcome, (value) => events.welcome(value));
    on(RelayEvent.peers, parsePeersOut, (value) => events.peers(value));
    on(RelayEvent.advert, (value) => parseAdvertOut(value), (value) => events.advert(value));
    on(RelayEvent.peerLeft, parsePeerLeft, (value) => events.peerLeft(value));
    on(RelayEvent.signal, parseSignalOut, (value) => events.signal(value));
    on(RelayEvent.error, parseRelayError, (value) => events.relayError(value));
    this.socket.on(RelayEvent.bridgeRead, (payload: unknown, ack: unknown) => {
      if (typeof ack !== 'function') return;
      const reply = (value: BridgeReadReply) => (ack as (value: unknown) => void)(value);
      let read: BridgeReadOut;
      try {
        read = parseBridgeReadOut(payload);
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
        reply({ ok: false, code: 'invalid', message: error.message });
        return;
      }
      if (!events.bridgeRead) {
        reply({ ok: false, code: 'not_found', message: 'this device serves no blocks' });
        return;
      }
      events.bridgeRead(read).then(reply, (error: unknown) =>
        reply({ ok: false, code: 'unavailable', message: error instanceof Error ? error.message : String(error) }),
      );
    });
    this.socket.on('disconnect', (reason) => events.disconnected(String(reason)));
    this.socket.on('connect', () => (this.retryMs = RETRY_FIRST_MS));
    this.socket.on('connect_error', (error) => {
      events.disconnected(error.message);
      // socket.io retries lost connections by itself, but not a handshake its server refused
      // (`active` is false then). A relay whose database is briefly away refuses with
      // "unavailable": come back later. "unauthorized" stays final.
      if (this.socket.active || !RETRYABLE_REFUSALS.has(error.message) || this.retryTimer) return;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.socket.connect();
      }, this.retryMs * (0.75 + Math.random() / 2));
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    });
  }

  advertise(ns: NamespaceId, cursor: Cursor): void {
    this.socket.emit(RelayEvent.advert, { ns, cursor });
  }

  signal(to: PeerId, data: SignalData): void {
    this.socket.emit(RelayEvent.signal, { to, data });
  }

  /** One block from LAN peer `peerId` through the server's bridge; queued beyond the relay's per-socket limit. */
  async bridgeFetch(ns: NamespaceId, peerId: PeerId, hash: BlockHash): Promise<Uint8Array> {
    if (this.bridgeFetches >= MAX_BRIDGE_FETCHES_PER_SOCKET) await new Promise<void>((resolve) => this.bridgeQueue.push(resolve));
    this.bridgeFetches += 1;
    try {
      let answer: unknown;
      try {
        answer = await this.socket.timeout(BRIDGE_FETCH_TIMEOUT_MS).emitWithAck(RelayEvent.bridgeFetch, { ns, peerId, hash });
      } catch {
        throw new BridgeFetchError('timeout', `the bridge did not answer within ${BRIDGE_FETCH_TIMEOUT_MS / 1000} s`);
      }
      let reply;
      try {
        reply = parseBridgeFetchReply(answer);
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
        throw new BridgeFetchError('malformed', `malformed bridge-fetch reply: ${error.message}`);
      }
      if (!reply.ok) throw new BridgeFetchError(reply.code, reply.message);
      return reply.data;
    } finally {
      this.bridgeFetches -= 1;
      this.bridgeQueue.shift()?.();
    }
  }

  close(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.socket.close();
  }
}
