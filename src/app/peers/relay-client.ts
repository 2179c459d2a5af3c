import { io, type Socket } from 'socket.io-client';
import {
  BRIDGE_BATCH_QUERY,
  MAX_BRIDGE_FETCHES_PER_SOCKET,
  MAX_BRIDGE_STREAM_ID,
  PIECE_SIZE,
  RELAY_PATH,
  RelayEvent,
  ValidationError,
  parseAdvertOut,
  parseBridgePieceOut,
  parseBridgeReadOut,
  parseBridgeStreamReply,
  parsePeerLeft,
  parsePeersOut,
  parseRelayError,
  parseSignalOut,
  parseWelcome,
  type AdvertOut,
  type BlockHash,
  type BridgeErrorCode,
  type BridgePieceOut,
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
 * Takes one verified-later piece of a streamed bridge fetch (`offset` in the block, in order).
 * Resolves false (or rejects) to stop the stream; the bridge gets the next piece's ack only
 * after this settled, so a slow taker slows the bridge down.
 */
export type BridgePieceSink = (offset: number, bytes: Uint8Array) => boolean | Promise<boolean>;

/** One streamed fetch in flight: what its pieces must look like next, and where they go. */
interface BridgeStream {
  sink: BridgePieceSink;
  /** Bytes taken so far (the next piece's offset). */
  received: number;
  /** A piece shorter than PIECE_SIZE came (an event not a multiple of it): it was the last. */
  ended: boolean;
  /** Set when the stream broke on our side: the fetch fails with it whatever the verdict. */
  failure: BridgeFetchError | null;
}

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
  private readonly streams = new Map<number, BridgeStream>();
  private nextStream = 1;

  /**
   * `options.bridgeBatches`: ask the relay for batched bridge pieces (a handshake query
   * parameter a relay that does not know it ignores; docs/protocol.md). Pieces are taken
   * either way. Off by default: measured so far, batches gave the page no throughput and a
   * later first byte (docs/architecture.md "LAN bridge").
   */
  constructor(origin: string, tokens: string[], label: string, events: RelayClientEvents, options: { bridgeBatches?: boolean } = {}) {
    const query = options.bridgeBatches ? { [BRIDGE_BATCH_QUERY]: '1' } : undefined;
    this.socket = io(origin, { path: RELAY_PATH, auth: { tokens, label }, query, transports: ['websocket'] });
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
    this.socket.on(RelayEvent.bridgePiece, (payload: unknown, ack: unknown) => {
      if (typeof ack === 'function') void this.onPiece(payload).then((more) => (ack as (value: unknown) => void)({ ok: more }));
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

  /**
   * One block from LAN peer `peerId`, streamed: each event's 64 KiB pieces (one, or a batch of
   * whole pieces back to back) go to `sink` in one call as the bridge forwards them, and this resolves with the block's size once the bridge says the whole block
   * hashed to `hash`. Until then the pieces are unverified: on a failure (BridgeFetchError)
   * whatever `sink` took must be thrown away. At most 8 in flight per socket (the relay's
   * limit); more wait here.
   */
  async bridgeStream(ns: NamespaceId, peerId: PeerId, hash: BlockHash, sink: BridgePieceSink): Promise<number> {
    await this.bridgeSlot();
    const id = this.nextStream;
    this.nextStream = id >= MAX_BRIDGE_STREAM_ID ? 1 : id + 1;
    const stream: BridgeStream = { sink, received: 0, ended: false, failure: null };
    this.streams.set(id, stream);
    try {
      const reply = this.parsed(parseBridgeStreamReply, await this.ask({ ns, peerId, hash, stream: id }));
      if (stream.failure) throw stream.failure;
      if (!reply.ok) throw new BridgeFetchError(reply.code, reply.message);
      if (reply.size !== stream.received) throw new BridgeFetchError('malformed', `the bridge vouched for ${reply.size} bytes but sent ${stream.received}`);
      return reply.size;
    } finally {
      this.streams.delete(id);
      this.releaseBridgeSlot();
    }
  }

  /**
   * One `bridge-piece` event of a streamed fetch (one piece, or a batch of whole pieces):
   * checked against what the stream expects, handed on whole, and the answer for the bridge.
   */
  private async onPiece(payload: unknown): Promise<boolean> {
    let piece: BridgePieceOut;
    try {
      piece = parseBridgePieceOut(payload);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      // Its stream cannot be trusted to be known: any stream it named stops at its next piece.
      return false;
    }
    const stream = this.streams.get(piece.stream);
    if (!stream || stream.failure) return false;
    if (piece.offset !== stream.received || stream.ended) {
      stream.failure = new BridgeFetchError('malformed', `bridge-piece at ${piece.offset} where ${stream.received} was next`);
      return false;
    }
    stream.received += piece.data.byteLength;
    // An event is whole pieces, but for the block's last: a short tail ends the stream.
    stream.ended = piece.data.byteLength % PIECE_SIZE !== 0;
    try {
      if (await stream.sink(piece.offset, piece.data)) return true;
      stream.failure = new BridgeFetchError('unavailable', 'the fetch was given up');
    } catch (error) {
      stream.failure = new BridgeFetchError('unavailable', `the piece could not be taken: ${error instanceof Error ? error.message : String(error)}`);
    }
    return false;
  }

  private async bridgeSlot(): Promise<void> {
    if (this.bridgeFetches >= MAX_BRIDGE_FETCHES_PER_SOCKET) await new Promise<void>((resolve) => this.bridgeQueue.push(resolve));
    this.bridgeFetches += 1;
  }

  private releaseBridgeSlot(): void {
    this.bridgeFetches -= 1;
    this.bridgeQueue.shift()?.();
  }

  private async ask(request: Record<string, unknown>): Promise<unknown> {
    try {
      return await this.socket.timeout(BRIDGE_FETCH_TIMEOUT_MS).emitWithAck(RelayEvent.bridgeFetch, request);
    } catch {
      throw new BridgeFetchError('timeout', `the bridge did not answer within ${BRIDGE_FETCH_TIMEOUT_MS / 1000} s`);
    }
  }

  private parsed<T>(parse: (value: unknown) => T, answer: unknown): T {
    try {
      return parse(answer);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      throw new BridgeFetchError('malformed', `malformed bridge-fetch reply: ${error.message}`);
    }
  }

  close(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.socket.close();
  }
}
