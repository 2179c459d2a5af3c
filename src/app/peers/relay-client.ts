import { io, type Socket } from 'socket.io-client';
import {
  RELAY_PATH,
  RelayEvent,
  ValidationError,
  parseAdvertOut,
  parsePeerLeft,
  parsePeersOut,
  parseRelayError,
  parseSignalOut,
  parseWelcome,
  type AdvertOut,
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

  close(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.socket.close();
  }
}
