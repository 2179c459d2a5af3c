import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import type { KeyObject } from 'node:crypto';
import {
  LAN_ADVERT_MAX_ENTRIES,
  LAN_ADVERT_MAX_SEQUENCE,
  LAN_DISCOVERY_PORT,
  LAN_PEER_ID_BYTES,
  encodeLanAdvert,
  lanAdvertEpoch,
  type LanAdvertEntry,
  type NamespaceId,
} from '../../protocol/index.ts';
import { advertTag, deriveAdvertKey } from './advert-keys.ts';

/** Adverts are repeated this often even when nothing changed (listeners forget after 90 s). */
export const LAN_ADVERT_INTERVAL_MS = 30_000;

export interface LanAdvertiserOptions {
  /** Where our block service listens; carried in every advert. */
  tcpPort: number;
  /**
   * Destination of the datagrams, e.g. the LAN's broadcast address (192.168.1.255), or one
   * per interface: each datagram goes to all of them under one sequence number (a listener
   * hearing two copies keeps the first, so two advertisers with one peer id would silence
   * each other).
   */
  broadcastAddress: string | readonly string[];
  /** Destination UDP port; default 17600. */
  port?: number;
  /** Local address to send from (picks the interface); default any. */
  bindAddress?: string;
  /** Fixed for one run; default 16 random bytes. */
  peerId?: Uint8Array;
  /**
   * The sequence of the first datagram; default 1. A peer id kept across restarts must
   * start above every sequence it sent before, or listeners drop its adverts as replays.
   */
  firstSequence?: number;
  intervalMs?: number;
  /** Wall clock (ms since the Unix epoch); tests move it. */
  now?: () => number;
}

interface Announced {
  key: KeyObject;
  cursor: number;
}

/**
 * Broadcasts this peer's LAN adverts: at start, soon after a namespace's cursor advances
 * (several advances in one tick share a datagram), and every 30 s. Nothing is sent before
 * start(): discovery is opt-in. More than 32 namespaces take several datagrams.
 */
export class LanAdvertiser {
  readonly peerId: Uint8Array;
  private readonly namespaces = new Map<NamespaceId, Announced>();
  private readonly now: () => number;
  private sequence = 0;
  private socket: Socket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private pending = false;
  private sent = 0;

  constructor(private readonly options: LanAdvertiserOptions) {
    this.peerId = options.peerId ?? new Uint8Array(randomBytes(LAN_PEER_ID_BYTES));
    if (this.peerId.length !== LAN_PEER_ID_BYTES) throw new TypeError(`peerId must be ${LAN_PEER_ID_BYTES} bytes`);
    if (!Number.isInteger(options.tcpPort) || options.tcpPort < 1 || options.tcpPort > 0xffff) throw new TypeError('tcpPort must be 1 to 65535');
    this.now = options.now ?? Date.now;
    const first = options.firstSequence ?? 1;
    if (!Number.isInteger(first) || first < 1 || first > LAN_ADVERT_MAX_SEQUENCE) throw new TypeError(`firstSequence must be 1 to ${LAN_ADVERT_MAX_SEQUENCE}`);
    this.sequence = first - 1;
  }

  /** The sequence of the last datagram sent (firstSequence - 1 before any). */
  get lastSequence(): number {
    return this.sequence;
  }

  /** Adds a namespace (or replaces its key) with the cursor to claim. */
  setNamespace(ns: NamespaceId, lanKey: Uint8Array, cursor: number): void {
    this.namespaces.set(ns, { key: deriveAdvertKey(lanKey), cursor });
    this.soon();
  }

  deleteNamespace(ns: NamespaceId): void {
    this.namespaces.delete(ns);
  }

  /** Records a new synced cursor; an advance is announced at once, a step back waits for the next period. */
  setCursor(ns: NamespaceId, cursor: number): void {
    const announced = this.namespaces.get(ns);
    if (!announced) throw new Error(`namespace ${ns} is not advertised`);
    const advanced = cursor > announced.cursor;
    announced.cursor = cursor;
    if (advanced) this.soon();
  }

  /** Datagrams sent so far. */
  get datagramsSent(): number {
    return this.sent;
  }

  async start(): Promise<void> {
    if (this.socket) throw new Error('advertiser already started');
    const socket = createSocket({ type: 'udp4' });
    this.socket = socket;
    // A send that fails (interface down) is retried by the next period; it must not end the process.
    socket.on('error', () => {});
    socket.bind(0, this.options.bindAddress);
    await once(socket, 'listening');
    socket.setBroadcast(true);
    this.timer = setInterval(() => void this.send(), this.options.intervalMs ?? LAN_ADVERT_INTERVAL_MS);
    this.timer.unref();
    await this.send();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  /** Sends on the next turn of the event loop, once for all changes made in this one. */
  private soon(): void {
    if (!this.socket || this.pending) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      void this.send();
    });
  }

  /** Sends every namespace's advert now. */
  async send(): Promise<void> {
    const socket = this.socket;
    if (!socket || this.namespaces.size === 0) return;
    const all = [...this.namespaces.values()];
    for (let i = 0; i < all.length; i += LAN_ADVERT_MAX_ENTRIES) {
      // Closed meanwhile; or a run that sent 2^32 datagrams (4,000 years at one a second).
      if (this.socket !== socket || this.sequence === LAN_ADVERT_MAX_SEQUENCE) return;
      const header = { peerId: this.peerId, tcpPort: this.options.tcpPort, epoch: lanAdvertEpoch(this.now()), sequence: ++this.sequence };
      const entries: LanAdvertEntry[] = all.slice(i, i + LAN_ADVERT_MAX_ENTRIES).map(({ key, cursor }) => ({ tag: advertTag(key, header, cursor), cursor }));
      const datagram = encodeLanAdvert({ ...header, entries });
      const destinations = typeof this.options.broadcastAddress === 'string' ? [this.options.broadcastAddress] : this.options.broadcastAddress;
      for (const address of destinations) {
        await new Promise<void>((resolve) => socket.send(datagram, this.options.port ?? LAN_DISCOVERY_PORT, address, () => resolve()));
        this.sent++;
      }
    }
  }
}
