import { io, type Socket } from 'socket.io-client';
import {
  parseAdvertOut,
  parsePeerLeft,
  parsePeersOut,
  parseRelayError,
  parseSignalOut,
  parseWelcome,
  type NamespaceId,
  type PeerId,
  type Welcome,
} from '../../src/protocol/index.ts';

/** Validates every event the relay sends with the protocol's *Out parsers, as a browser would. */
const PARSERS: Record<string, (value: unknown) => unknown> = {
  welcome: parseWelcome,
  advert: parseAdvertOut,
  peers: parsePeersOut,
  signal: parseSignalOut,
  'peer-left': parsePeerLeft,
  'relay-error': parseRelayError,
};

export interface Received {
  event: string;
  payload: any;
}

/** A real socket.io-client connected to the relay that records (and validates) what it receives. */
export class RelayClient {
  readonly received: Received[] = [];
  /** Events that failed validation or arrived with an unexpected shape. */
  readonly malformed: Array<{ event: string; args: unknown[]; error: string }> = [];
  disconnectReason: string | null = null;
  private waiters: Array<() => void> = [];
  private readonly timers = new Set<ReturnType<typeof setInterval>>();

  private constructor(
    readonly socket: Socket,
    readonly welcome: Welcome,
  ) {}

  get peerId(): PeerId {
    return this.welcome.peerId;
  }

  /** Connects and resolves on `welcome`; rejects with the connect_error. */
  static connect(url: string, auth: unknown, options: { transports?: string[]; query?: Record<string, string> } = {}): Promise<RelayClient> {
    const socket = io(url, {
      auth: auth as Record<string, unknown>,
      query: options.query,
      transports: options.transports ?? ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    const early: Array<[string, unknown[]]> = [];
    socket.onAny((event: string, ...args: unknown[]) => early.push([event, args]));
    return new Promise((resolve, reject) => {
      socket.once('connect_error', (err) => {
        socket.close();
        reject(err);
      });
      socket.once('welcome', (payload: unknown) => {
        const client = new RelayClient(socket, parseWelcome(payload));
        socket.offAny();
        socket.onAny((event: string, ...args: unknown[]) => client.record(event, args));
        socket.on('disconnect', (reason) => {
          client.disconnectReason = reason;
          client.wake();
        });
        for (const [event, args] of early) client.record(event, args);
        resolve(client);
      });
    });
  }

  private record(event: string, args: unknown[]): void {
    const parse = PARSERS[event];
    try {
      if (!parse) throw new Error('unknown event');
      if (args.length !== 1) throw new Error(`${args.length} arguments`);
      this.received.push({ event, payload: parse(args[0]) });
    } catch (err) {
      this.malformed.push({ event, args, error: String(err) });
    }
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Payloads of `event` received so far. */
  all(event: string): any[] {
    return this.received.filter((r) => r.event === event).map((r) => r.payload);
  }

  /** Waits for a received `event` payload matching `match` (already received ones count). */
  async next(event: string, match: (payload: any) => boolean = () => true, timeoutMs = 3000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find((r) => r.event === event && match(r.payload));
      if (found) return found.payload;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${event} at ${this.peerId}; got ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits until the relay has disconnected this socket. */
  async disconnected(timeoutMs = 3000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.disconnectReason === null) {
      if (Date.now() > deadline) throw new Error(`${this.peerId} still connected`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.disconnectReason;
  }

  advert(ns: NamespaceId | string, cursor: number): void {
    this.socket.emit('advert', { ns, cursor });
  }

  /**
   * Advertises `cursor` now and again every `intervalMs`, as a browser does (every 30 s);
   * returns a function that stops it (close() stops it too).
   */
  keepAdvertising(ns: NamespaceId | string, cursor: number, intervalMs: number): () => void {
    this.advert(ns, cursor);
    const timer = setInterval(() => this.advert(ns, cursor), intervalMs);
    this.timers.add(timer);
    return () => {
      clearInterval(timer);
      this.timers.delete(timer);
    };
  }

  /** A round trip through the relay: the `peers` list of `ns` by acknowledgement. */
  peers(ns: NamespaceId | string, timeoutMs = 3000): Promise<any> {
    return this.socket.timeout(timeoutMs).emitWithAck('peers', { ns }).then((reply: unknown) => parsePeersOut(reply));
  }

  close(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers.clear();
    this.socket.close();
  }
}

/** Connect-error message and data of a refused handshake. */
export async function refusal(url: string, auth: unknown, transports?: string[]): Promise<{ message: string; data: unknown }> {
  try {
    const client = await RelayClient.connect(url, auth, { transports });
    client.close();
  } catch (err) {
    return { message: (err as Error).message, data: (err as { data?: unknown }).data };
  }
  throw new Error('the relay accepted the connection');
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
