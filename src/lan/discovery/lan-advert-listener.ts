import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { once } from 'node:events';
import {
  LAN_ADVERT_MAX_BYTES,
  LAN_DISCOVERY_PORT,
  LanAdvertError,
  decodeLanAdvert,
  lanAdvertEpoch,
  type LanAdvertDatagram,
  type NamespaceId,
} from '../../protocol/index.ts';
import { AdvertKeyring } from './advert-keys.ts';
import { LanPeerTable, type LanPeerAdvert } from './lan-peer-table.ts';
import { WorkBudget } from './work-budget.ts';

export const DROP_REASONS = ['malformed', 'oversized', 'stale', 'own', 'unknown_tag', 'replay', 'rate_limited', 'table_full'] as const;
export type DropReason = (typeof DROP_REASONS)[number];
export type ListenerCounters = Record<DropReason | 'accepted', number>;

/** An unheard peer is forgotten after this long (three advert periods). */
export const LAN_PEER_TTL_MS = 90_000;
/** Tag checks (one HMAC each) one datagram may cost: 32 entries against 8 namespaces. */
const MAX_TAG_CHECKS_PER_DATAGRAM = 256;
/** Tag checks per second across all datagrams (about 4 µs each: well under a tenth of a core). */
const MAX_TAG_CHECKS_PER_SECOND = 20_000;

export interface LanAdvertListenerOptions {
  /** UDP port to bind; default 17600. 0 picks a free one (tests). */
  port?: number;
  /** Address to bind; default all (0.0.0.0), which broadcasts reach. */
  bindAddress?: string;
  /** The peer id of this process's own advertiser: its datagrams are dropped. */
  ownPeerId?: Uint8Array;
  onAdvert(advert: LanPeerAdvert): void;
  onExpired?(advert: LanPeerAdvert): void;
  /** Wall clock (ms since the Unix epoch); tests move it. */
  now?: () => number;
  ttlMs?: number;
  /** Tag checks (HMACs) allowed per second across all datagrams; default 20,000. */
  tagChecksPerSecond?: number;
}

/**
 * Listens for LAN advert datagrams and turns each entry whose tag one of our namespaces'
 * keys made into a LanPeerAdvert. Everything else is dropped and counted, cheapest check
 * first: size, layout, own datagram, epoch (current ± 1), work budget, tag, sequence.
 */
export class LanAdvertListener {
  private readonly keyring = new AdvertKeyring();
  private readonly table: LanPeerTable;
  private readonly budget: WorkBudget;
  private readonly counts: ListenerCounters = { accepted: 0, ...Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) } as ListenerCounters;
  private readonly now: () => number;
  private readonly ownPeerId: string | null;
  private socket: Socket | null = null;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(private readonly options: LanAdvertListenerOptions) {
    this.now = options.now ?? Date.now;
    this.table = new LanPeerTable(options.ttlMs ?? LAN_PEER_TTL_MS);
    const perSecond = options.tagChecksPerSecond ?? MAX_TAG_CHECKS_PER_SECOND;
    this.budget = new WorkBudget(perSecond, perSecond);
    this.ownPeerId = options.ownPeerId ? Buffer.from(options.ownPeerId).toString('hex') : null;
  }

  /** Adds (or replaces) a namespace whose adverts we want to recognise. */
  setNamespace(ns: NamespaceId, lanKey: Uint8Array): void {
    this.keyring.set(ns, lanKey);
  }

  deleteNamespace(ns: NamespaceId): void {
    this.keyring.delete(ns);
  }

  /** Binds the port (shared with other listeners on this machine: reuseAddr). */
  async start(): Promise<void> {
    if (this.socket) throw new Error('listener already started');
    const socket = createSocket({ type: 'udp4', reuseAddr: true });
    this.socket = socket;
    socket.on('message', (message, remote) => this.receive(message, remote));
    socket.bind(this.options.port ?? LAN_DISCOVERY_PORT, this.options.bindAddress);
    await once(socket, 'listening');
    const ttl = this.options.ttlMs ?? LAN_PEER_TTL_MS;
    this.sweeper = setInterval(() => this.sweep(), Math.min(ttl / 3, 10_000));
    this.sweeper.unref();
  }

  /** The bound port (after start). */
  get port(): number {
    if (!this.socket) throw new Error('listener not started');
    return this.socket.address().port;
  }

  counters(): ListenerCounters {
    return { ...this.counts };
  }

  /** The adverts heard and not yet expired. */
  peers(): LanPeerAdvert[] {
    return this.table.current();
  }

  /** Forgets peers unheard for the ttl (also runs on a timer). */
  sweep(): void {
    for (const gone of this.table.expire(this.now())) this.options.onExpired?.(gone);
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }

  /** One datagram in; public so the checks can be driven without a socket. */
  receive(message: Uint8Array, remote: Pick<RemoteInfo, 'address'>): void {
    const outcome = this.judge(message, remote.address);
    this.counts[outcome]++;
  }

  private judge(message: Uint8Array, address: string): DropReason | 'accepted' {
    if (message.length > LAN_ADVERT_MAX_BYTES) return 'oversized';
    let datagram: LanAdvertDatagram;
    try {
      datagram = decodeLanAdvert(message);
    } catch (err) {
      if (err instanceof LanAdvertError) return err.reason === 'oversized' ? 'oversized' : 'malformed';
      throw err;
    }
    const peerId = Buffer.from(datagram.peerId).toString('hex');
    if (peerId === this.ownPeerId) return 'own';
    const at = this.now();
    if (Math.abs(datagram.epoch - lanAdvertEpoch(at)) > 1) return 'stale';
    const checks = Math.min(datagram.entries.length * this.keyring.size, MAX_TAG_CHECKS_PER_DATAGRAM);
    if (!this.budget.take(checks)) return 'rate_limited';

    let outcome: DropReason | 'accepted' = 'unknown_tag';
    let checksLeft = MAX_TAG_CHECKS_PER_DATAGRAM;
    for (const entry of datagram.entries) {
      if (checksLeft < this.keyring.size) break;
      checksLeft -= this.keyring.size;
      const ns = this.keyring.match(datagram, entry.cursor, entry.tag);
      if (ns === null) continue;
      const advert: LanPeerAdvert = { peerId, address, tcpPort: datagram.tcpPort, ns, cursor: entry.cursor, at };
      const result = this.table.accept(advert, datagram.sequence);
      if (result === 'accepted') {
        outcome = 'accepted';
        this.options.onAdvert(advert);
      } else if (outcome !== 'accepted') {
        outcome = result === 'replay' ? 'replay' : 'table_full';
      }
    }
    return outcome;
  }
}
