import { randomBytes } from 'node:crypto';
import type { BlockSource, LocalBlockStore } from '../engine/types.ts';
import { LAN_PEER_ID_BYTES, MAX_BLOCK_SIZE, type BlockHash, type NamespaceId } from '../protocol/index.ts';
import type { CommittedListener, SyncedListener } from './daemon.ts';
import { LanAdvertListener, LanAdvertiser, NewcomerAnswer, type LanPeerAdvert, type ListenerCounters } from './discovery/index.ts';
import { FreshEntryHold, nearbyCursor, type NearbyPeer } from './fresh-entry-hold.ts';
import { banKey, plainIp } from './lan-ban.ts';
import { connectLanPeer, LanConnectError } from './tcp/connect.ts';
import { LanBlockServer, type LanBlockServerStats } from './tcp/lan-block-server.ts';
import { BlockBufferPool } from '../engine/block-buffers.ts';
import { isProtocolFailure, type LanPeer, type SessionFailure } from './tcp/lan-session.ts';

/** What LAN peering needs of the daemon (PeerDaemon has it all). */
export interface LanPeeringHost {
  readonly ns: NamespaceId;
  readonly blocks: LocalBlockStore;
  readonly syncedCursor: number;
  holdsLiveBlock(hash: BlockHash): boolean;
  onSynced(listener: SyncedListener): () => void;
  onPenalised(listener: (sourceId: string) => void): () => void;
  onCommitted(listener: CommittedListener): () => void;
  addSource(source: BlockSource): void;
  removeSource(id: string): void;
  /** Sources may claim other blocks now: the scheduler should look again. */
  sourcesChanged(): void;
}

export interface LanPeeringOptions {
  host: LanPeeringHost;
  /** The workspace's LAN key (ServerApi.lanKey). */
  lanKey: Uint8Array;
  /** UDP port adverts are sent to and heard on. */
  udpPort: number;
  /** TCP port of our block service; 0 picks a free one (the adverts carry the real one). */
  tcpPort: number;
  /** Where adverts go (one datagram to each); empty: we only listen. */
  broadcastAddresses: readonly string[];
  log: (line: string) => void;
  /** LAN peers used as block sources at once. */
  maxPeers?: number;
  /** Address the block service binds; default all interfaces (the PSK handshake keeps strangers out). */
  tcpHost?: string;
  /** First reconnect delay; doubles per failure up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Our LAN peer id (kept across restarts by LanIdentity); default a fresh random one. */
  peerId?: Uint8Array;
  /** The sequence of our first advert (LanIdentity.firstSequence); default 1. */
  firstSequence?: number;
  /** Links with nothing received and nothing in flight this long are closed; default 120 s, 0: never. */
  idleTimeoutMs?: number;
  /** How long a new entry no LAN peer claims yet waits for one before the server serves it; default 3 s, 0: never. */
  freshEntryHoldMs?: number;
  /** Address the advert listener binds; default all interfaces (which broadcasts reach). */
  udpBindAddress?: string;
  /** A peer unheard this long is no longer dialled (LanAdvertListener's ttl); default 90 s. */
  advertTtlMs?: number;
}

/** A peer id at an address that broke the protocol or sent bad data: not used again this run. */
export interface LanBan {
  peerId: string;
  /** The IP address of the connection that failed (the kernel's word, not the peer's). */
  address: string;
  why: string;
  at: string;
}

/** What the daemon reports of its LAN side (the status file, tests). */
export interface LanPeeringStatus {
  peerId: string;
  tcpPort: number;
  udpPort: number;
  advertsSent: number;
  lastAdvertSequence: number;
  peers: { peerId: string; address: string | null; cursor: number | null; links: number; active: boolean }[];
  bans: LanBan[];
  /** Connections that proved the key but came from a banned peer id and address. */
  refusedBanned: number;
  /** Links closed for idleness, either side. */
  idleClosed: number;
  /** UDP datagrams accepted and dropped, by reason. */
  discovery: ListenerCounters;
  /** TCP connections: accepted, refused by reason, requests refused by reason. */
  blockService: LanBlockServerStats;
}

/** One remote LAN peer: what it last advertised and the connections we have with it. */
interface RemotePeer {
  readonly peerId: string;
  advert: LanPeerAdvert | null;
  /** Open sessions, dialled or accepted (a simultaneous dial both ways gives two). */
  readonly links: Set<LanPeer>;
  /** The link whose source the engine uses. */
  active: LanPeer | null;
  dialling: AbortController | null;
  retry: NodeJS.Timeout | null;
  failures: number;
}

const DEFAULT_MAX_PEERS = 8;
/** Enough for a nearby writer to read back its commit and advertise it, even on a busy machine. */
const DEFAULT_FRESH_ENTRY_HOLD_MS = 3_000;

const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
/** A link up this long before it closed counts as a success for the reconnect backoff. */
const LASTING_LINK_MS = 30_000;

const short = (peerId: string) => peerId.slice(0, 8);
/** An IPv4 peer accepted on a dual-stack socket shows as ::ffff:a.b.c.d. */
const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

/**
 * Puts a started (or starting) daemon on the LAN: serves its blocks over TCP to members who
 * prove the workspace's LAN key, advertises its synced cursor over UDP, and, for each peer
 * whose advert covers journal entries we have not synced, connects and hands the peer to
 * the engine as a block source. One connection per peer (an accepted one counts), at most
 * `maxPeers` used as sources, reconnects with backoff while the peer keeps advertising, no
 * longer dialled once its adverts stop (expiry: its open links stay until they close, and it
 * is forgotten with the last one); banned for the run when the engine penalises it or
 * a link with it fails for a protocol error (garbage, a lying hello), either direction.
 *
 * A ban names the peer id AND the IP address of the connection that failed. The peer id is
 * only claimed (any member can send a hello with another member's id), the address is the
 * kernel's: a member misbehaving under another's id bans that id at its own address only,
 * and the honest owner of the id, elsewhere, keeps being served and used.
 */
export class LanPeering {
  readonly peerId: Uint8Array;
  private readonly server: LanBlockServer;
  private readonly listener: LanAdvertListener;
  private advertiser: LanAdvertiser | null = null;
  private readonly remotes = new Map<string, RemotePeer>();
  /** The IP address each link runs to (the advert's for a dialled link, the socket's for an accepted one). */
  private readonly linkAddress = new Map<LanPeer, string>();
  /** When each link came up: one that lasted is a success, whatever closed it. */
  private readonly linkSince = new Map<LanPeer, number>();
  private readonly bans = new Map<string, LanBan>();
  private refusedBanned = 0;
  private idleClosed = 0;
  /** Blocks of each link already reported in the log. */
  private readonly reported = new Map<LanPeer, number>();
  private readonly unsubscribe: (() => void)[] = [];
  private readonly peerWaiters = new Set<() => void>();
  private readonly answer = new NewcomerAnswer(() => void this.advertiser?.send());
  private closed = false;
  private boundTcpPort = 0;
  private readonly hold: FreshEntryHold | null;
  /**
   * Blocks from LAN peers are received into reused 4 MiB buffers: a fresh zero-filled buffer
   * per block (page faults, then the garbage collector) was the receiving daemon's largest
   * cost after the copy itself. They are shared memory, so the store hashes each block on a
   * worker thread without copying it (store/sha256-worker.ts).
   */
  private readonly buffers = new BlockBufferPool(MAX_BLOCK_SIZE, 16, 10_000, true);

  constructor(private readonly options: LanPeeringOptions) {
    const { host } = options;
    const holdMs = options.freshEntryHoldMs ?? DEFAULT_FRESH_ENTRY_HOLD_MS;
    this.hold = holdMs > 0 ? new FreshEntryHold({ holdMs, nearbyCursor: () => this.nearbyCursor(), wake: () => host.sourcesChanged() }) : null;
    this.peerId = options.peerId ?? new Uint8Array(randomBytes(LAN_PEER_ID_BYTES));
    this.server = new LanBlockServer({
      host: options.tcpHost ?? '0.0.0.0',
      port: options.tcpPort,
      peerId: this.peerId,
      store: host.blocks,
      isLiveBlock: async (ns, hash) => ns === host.ns && host.holdsLiveBlock(hash),
      cursorOf: () => host.syncedCursor,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      onPeer: (peer) => this.accepted(peer),
      onPeerClosed: (peer, failure) => this.linkClosed(peer.remotePeerId, peer, failure, plainIp(peer.remoteAddress)),
      onPeerCursor: () => this.cursorRose(),
      link: { buffers: this.buffers },
    });
    this.server.setNamespace(host.ns, options.lanKey);
    this.listener = new LanAdvertListener({
      port: options.udpPort,
      bindAddress: options.udpBindAddress,
      ttlMs: options.advertTtlMs,
      ownPeerId: this.peerId,
      onAdvert: (advert) => this.heard(advert),
      onExpired: (advert) => this.expired(advert),
    });
    this.listener.setNamespace(host.ns, options.lanKey);
  }

  /** The TCP port the block service listens on (after start). */
  get tcpPort(): number {
    return this.boundTcpPort;
  }

  /** The sequence of our last advert (for LanIdentity.keepAhead). */
  get lastAdvertSequence(): number {
    return this.advertiser?.lastSequence ?? (this.options.firstSequence ?? 1) - 1;
  }

  isBanned(peerId: string, address: string): boolean {
    return this.bans.has(banKey(peerId, address));
  }

  status(): LanPeeringStatus {
    const stats = this.server.stats;
    return {
      peerId: Buffer.from(this.peerId).toString('hex'),
      tcpPort: this.boundTcpPort,
      udpPort: this.options.udpPort,
      advertsSent: this.advertiser?.datagramsSent ?? 0,
      lastAdvertSequence: this.lastAdvertSequence,
      peers: [...this.remotes.values()].map((remote) => ({
        peerId: remote.peerId,
        address: remote.advert?.address ?? null,
        cursor: remote.advert?.cursor ?? null,
        links: remote.links.size,
        active: remote.active !== null,
      })),
      bans: [...this.bans.values()],
      refusedBanned: this.refusedBanned,
      idleClosed: this.idleClosed + stats.idleClosed,
      discovery: this.listener.counters(),
      blockService: { ...stats, refused: { ...stats.refused }, nacked: { ...stats.nacked } },
    };
  }

  /** Connections used as block sources now. */
  connectedPeers(): string[] {
    return [...this.remotes.values()].filter((remote) => remote.active).map((remote) => remote.peerId);
  }

  async start(): Promise<void> {
    const { host, log } = this.options;
    this.boundTcpPort = (await this.server.listen()).port;
    // Listen before the first advert goes out, so the peers' answers to it are heard.
    await this.listener.start();
    this.advertiser = new LanAdvertiser({
      tcpPort: this.boundTcpPort,
      broadcastAddress: this.options.broadcastAddresses,
      port: this.options.udpPort,
      peerId: this.peerId,
      firstSequence: this.options.firstSequence,
    });
    this.advertiser.setNamespace(host.ns, this.options.lanKey, host.syncedCursor);
    this.unsubscribe.push(
      host.onSynced((_ns, cursor) => this.synced(cursor)),
      host.onPenalised((sourceId) => this.penalised(sourceId)),
      host.onCommitted((ns, _sjid, blocks) => this.announce(ns, blocks)),
    );
    const to = this.options.broadcastAddresses.length > 0 ? this.options.broadcastAddresses.join(', ') : 'nowhere (no IPv4 LAN interface)';
    log(`LAN: serving blocks on tcp/${this.boundTcpPort}; adverts on udp/${this.options.udpPort} to ${to}`);
    if (this.options.broadcastAddresses.length > 0) await this.advertiser.start();
    if (this.hold) host.addSource(this.hold);
  }

  /** The highest cursor a LAN peer we fetch from now covers (null: no LAN peer heard); see `nearbyCursor`. */
  private nearbyCursor(): number | null {
    return nearbyCursor(this.nearbyPeers());
  }

  private *nearbyPeers(): Iterable<NearbyPeer> {
    for (const { peerId, advert, active } of this.remotes.values()) {
      const linked = active !== null && active.link.isOpen;
      yield {
        heard: linked || (advert !== null && !this.isBanned(peerId, advert.address)),
        // The source's cursor: the later of the peer's hellos and its adverts (heard() raises it).
        sourceCursor: linked ? (active.source.advert(active.ns) ?? null) : null,
      };
    }
  }

  /** Resolves once a LAN peer is a block source, or after `timeoutMs`; says which. */
  waitForPeer(timeoutMs: number): Promise<boolean> {
    if (this.connectedPeers().length > 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (found: boolean) => {
        clearTimeout(timer);
        this.peerWaiters.delete(waiter);
        resolve(found);
      };
      const waiter = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.peerWaiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.unsubscribe.splice(0)) stop();
    this.answer.close();
    if (this.hold) {
      this.hold.close();
      this.options.host.removeSource(this.hold.id);
    }
    for (const remote of this.remotes.values()) this.disconnect(remote);
    this.remotes.clear();
    await Promise.all([this.advertiser?.close(), this.listener.close(), this.server.close()]);
  }

  // ------------------------------------------------------------ discovery

  private heard(advert: LanPeerAdvert): void {
    if (this.closed || advert.ns !== this.options.host.ns) return;
    let remote = this.remotes.get(advert.peerId);
    const before = remote?.advert ?? null;
    if (!remote) {
      remote = { peerId: advert.peerId, advert: null, links: new Set(), active: null, dialling: null, retry: null, failures: 0 };
      this.remotes.set(advert.peerId, remote);
    }
    if (before === null) this.answerNewcomer();
    remote.advert = advert;
    if (before === null || before.cursor !== advert.cursor || before.address !== advert.address || before.tcpPort !== advert.tcpPort) {
      this.options.log(`LAN: peer ${short(advert.peerId)} at ${advert.address}:${advert.tcpPort} cursor ${advert.cursor}`);
    }
    let rose = false;
    for (const link of remote.links) {
      if (advert.cursor <= (link.source.advert(link.ns) ?? -1)) continue;
      link.source.setAdvert(link.ns, advert.cursor);
      rose = true;
    }
    if (rose) this.cursorRose();
    this.maybeDial(remote);
  }

  /**
   * A linked peer's cursor rose (its advert or a hello): blocks the scheduler keeps waiting,
   * those of the fresh-entry hold above all, may be claimed by that peer now. Without a wake
   * they would wait for the hold to end (and then still come from that peer).
   */
  private cursorRose(): void {
    if (!this.closed) this.options.host.sourcesChanged();
  }

  /** A peer we had not heard learns of us now rather than at our next periodic advert. */
  private answerNewcomer(): void {
    if (this.advertiser) this.answer.request();
  }

  /**
   * A peer unheard for the advert ttl is no longer dialled or redialled, and is forgotten once
   * it has no link. Its open links stay: adverts are datagrams and get lost (Wi-Fi drops
   * broadcasts), a link carrying blocks says more of the peer than missing adverts do, and a dead
   * link ends by its own stall and idle timeouts. A link the peer dialled (a LAN bridge, a daemon
   * behind us) never rested on its adverts at all; closing those on expiry cut working transfers.
   */
  private expired(advert: LanPeerAdvert): void {
    const remote = this.remotes.get(advert.peerId);
    if (!remote || advert.ns !== this.options.host.ns) return;
    remote.advert = null;
    remote.dialling?.abort();
    remote.dialling = null;
    if (remote.retry) clearTimeout(remote.retry);
    remote.retry = null;
    const stays = remote.links.size > 0 ? 'not dialled again; its open link stays' : 'dropped';
    this.options.log(`LAN: peer ${short(remote.peerId)} not heard for a while: ${stays}`);
    this.forgetIfGone(remote);
  }

  /** A peer with no advert heard and no link left (it went quiet, or only ever dialled us) is forgotten. */
  private forgetIfGone(remote: RemotePeer): void {
    if (remote.advert || remote.links.size > 0 || remote.dialling) return;
    if (remote.retry) clearTimeout(remote.retry);
    remote.retry = null;
    this.remotes.delete(remote.peerId);
  }

  // ------------------------------------------------------------ connections

  private usedSlots(): number {
    let used = 0;
    for (const remote of this.remotes.values()) if (remote.active || remote.dialling) used++;
    return used;
  }

  private maybeDial(remote: RemotePeer): void {
    const { host } = this.options;
    const advert = remote.advert;
    if (this.closed || remote.dialling || remote.retry || remote.links.size > 0 || !advert) return;
    const address = plainIp(advert.address);
    if (this.isBanned(remote.peerId, address)) return;
    // Only a peer that holds what we lack is worth a connection; it may dial us later for the reverse.
    if (advert.cursor <= host.syncedCursor) return;
    if (this.usedSlots() >= (this.options.maxPeers ?? DEFAULT_MAX_PEERS)) return;
    const controller = new AbortController();
    remote.dialling = controller;
    let dialled: LanPeer | null = null;
    connectLanPeer({
      host: advert.address,
      port: advert.tcpPort,
      ns: host.ns,
      lanKey: this.options.lanKey,
      peerId: this.peerId,
      cursor: host.syncedCursor,
      serve: { store: host.blocks, isLiveBlock: async (ns, hash) => ns === host.ns && host.holdsLiveBlock(hash) },
      signal: controller.signal,
      idleTimeoutMs: this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      onIdle: () => (this.idleClosed += 1),
      // Keyed by the id we dialled: a peer that answers as another id is never attached.
      onClose: (failure) => this.linkClosed(remote.peerId, dialled, failure, address),
      onCursor: () => this.cursorRose(),
      link: { buffers: this.buffers },
    }).then(
      (peer) => {
        dialled = peer;
        remote.dialling = null;
        if (this.closed || this.isBanned(remote.peerId, address) || this.remotes.get(remote.peerId) !== remote) return peer.close();
        if (peer.remotePeerId !== remote.peerId) {
          peer.close();
          return this.dialFailed(remote, `it answered as peer ${short(peer.remotePeerId)}`);
        }
        // Closed between the hello and now: its close was reported before we knew the link.
        if (peer.link.isClosed) return this.dialFailed(remote, 'the connection closed right after the hello');
        remote.failures = 0;
        this.attach(remote, peer, address, 'connected to');
      },
      (error: Error) => {
        remote.dialling = null;
        if (this.closed || controller.signal.aborted) return;
        if (error instanceof LanConnectError && isProtocolFailure(error.failure)) return this.ban(remote, address, `broke the LAN protocol (${error.failure})`);
        this.dialFailed(remote, error.message);
      },
    );
  }

  private dialFailed(remote: RemotePeer, why: string): void {
    remote.failures += 1;
    const delay = this.backoff(remote);
    this.options.log(`LAN: could not connect to ${short(remote.peerId)}: ${why}; trying again in ${Math.round(delay / 1000)} s`);
    this.scheduleRetry(remote, delay);
  }

  private backoff(remote: RemotePeer): number {
    const first = this.options.backoffMs ?? 1_000;
    return Math.min(this.options.maxBackoffMs ?? 60_000, first * 2 ** Math.min(Math.max(0, remote.failures - 1), 16));
  }

  private scheduleRetry(remote: RemotePeer, delay: number): void {
    if (remote.retry || this.closed) return;
    remote.retry = setTimeout(() => {
      remote.retry = null;
      this.maybeDial(remote);
    }, delay);
    remote.retry.unref();
  }

  /** A peer dialled us and proved the key: use the same connection both ways. */
  private accepted(peer: LanPeer): void {
    if (this.closed) return peer.close();
    let remote = this.remotes.get(peer.remotePeerId);
    if (!remote) {
      remote = { peerId: peer.remotePeerId, advert: null, links: new Set(), active: null, dialling: null, retry: null, failures: 0 };
      this.remotes.set(peer.remotePeerId, remote);
    }
    const address = plainIp(peer.remoteAddress);
    if (this.isBanned(remote.peerId, address)) {
      this.refusedBanned += 1;
      return peer.close();
    }
    this.attach(remote, peer, address, 'accepted');
  }

  private attach(remote: RemotePeer, peer: LanPeer, address: string, how: string): void {
    remote.links.add(peer);
    this.linkAddress.set(peer, address);
    this.linkSince.set(peer, Date.now());
    this.reported.set(peer, 0);
    const advert = remote.advert;
    if (advert && advert.cursor > peer.remoteCursor) peer.source.setAdvert(peer.ns, advert.cursor);
    this.options.log(`LAN: ${how} ${short(remote.peerId)} at ${peer.remoteAddress} cursor ${peer.remoteCursor}`);
    // An accepted connection beyond the limit still serves the remote; we just do not fetch on it.
    if (!remote.active && (this.usedSlots() < (this.options.maxPeers ?? DEFAULT_MAX_PEERS))) this.activate(remote, peer);
  }

  private activate(remote: RemotePeer, peer: LanPeer): void {
    remote.active = peer;
    this.options.host.addSource(peer.source);
    for (const waiter of [...this.peerWaiters]) waiter();
  }

  /** A link closed: promotes a spare or schedules a reconnect; a protocol failure bans the peer id at that address. */
  private linkClosed(peerId: string, peer: LanPeer | null, failure: SessionFailure | null, address: string): void {
    const remote = this.remotes.get(peerId);
    if (this.closed || !remote) return;
    if (isProtocolFailure(failure)) this.ban(remote, address, `broke the LAN protocol (${failure})`);
    if (!peer || !remote.links.has(peer)) return;
    const wasActive = remote.active === peer;
    // An idle close (or any close after a good while) says nothing against the peer: the next
    // dial, once its advert shows it ahead, should not wait out an old backoff.
    const lasting = Math.min(LASTING_LINK_MS, this.options.idleTimeoutMs || LASTING_LINK_MS);
    if (Date.now() - (this.linkSince.get(peer) ?? Date.now()) >= lasting) remote.failures = 0;
    this.dropLink(remote, peer);
    if (!wasActive || remote.active) return this.forgetIfGone(remote);
    this.options.log(`LAN: connection to ${short(remote.peerId)} closed`);
    if (!remote.advert) return this.forgetIfGone(remote);
    if (this.isBanned(remote.peerId, remote.advert.address)) return;
    remote.failures += 1;
    this.scheduleRetry(remote, this.backoff(remote));
  }

  /** Forgets one link (closing it if open); promotes a spare link of the peer to source. */
  private dropLink(remote: RemotePeer, peer: LanPeer): void {
    remote.links.delete(peer);
    this.linkAddress.delete(peer);
    this.linkSince.delete(peer);
    this.report(remote, peer);
    this.reported.delete(peer);
    peer.close();
    if (remote.active !== peer) return;
    remote.active = null;
    this.options.host.removeSource(peer.source.id);
    const spare = [...remote.links][0];
    if (spare) this.activate(remote, spare);
  }

  private disconnect(remote: RemotePeer): void {
    remote.dialling?.abort();
    remote.dialling = null;
    if (remote.retry) clearTimeout(remote.retry);
    remote.retry = null;
    if (remote.active) this.options.host.removeSource(remote.active.source.id);
    remote.active = null;
    for (const peer of remote.links) {
      this.report(remote, peer);
      this.reported.delete(peer);
      this.linkAddress.delete(peer);
      this.linkSince.delete(peer);
      peer.close();
    }
    remote.links.clear();
  }

  private penalised(sourceId: string): void {
    for (const remote of this.remotes.values()) {
      for (const peer of remote.links) {
        if (peer.source.id === sourceId) return this.ban(remote, this.linkAddress.get(peer) ?? plainIp(peer.remoteAddress), 'sent bad data');
      }
    }
  }

  /** Bans the peer id at this address: its links from there close, and it is neither dialled there nor accepted from there again. */
  private ban(remote: RemotePeer, address: string, why: string): void {
    const key = banKey(remote.peerId, address);
    if (this.bans.has(key)) return;
    this.bans.set(key, { peerId: remote.peerId, address: plainIp(address), why, at: new Date().toISOString() });
    this.options.log(`LAN: peer ${short(remote.peerId)} at ${plainIp(address)} ${why}: banned there for this run`);
    for (const peer of [...remote.links]) if (this.linkAddress.get(peer) === plainIp(address)) this.dropLink(remote, peer);
    if (remote.advert && plainIp(remote.advert.address) === plainIp(address)) {
      remote.dialling?.abort();
      remote.dialling = null;
      if (remote.retry) clearTimeout(remote.retry);
      remote.retry = null;
    }
  }

  // ------------------------------------------------------------ progress

  private synced(cursor: number): void {
    if (this.closed) return;
    this.advertiser?.setCursor(this.options.host.ns, cursor);
    for (const remote of this.remotes.values()) {
      for (const peer of remote.links) {
        this.report(remote, peer);
        try {
          peer.sendCursor(cursor);
        } catch {
          // A link over its send budget is being closed by its channel; its onClose follows.
        }
      }
    }
  }

  /**
   * Our commit reaches the peers' engines through the server's journal, our synced cursor
   * only after ours reads it back: a HAVE now lets them fetch the blocks from us, not the server.
   */
  private announce(ns: NamespaceId, blocks: readonly BlockHash[]): void {
    if (this.closed) return;
    for (const remote of this.remotes.values()) for (const peer of remote.links) peer.link.sendHave(ns, blocks);
  }

  private report(remote: RemotePeer, peer: LanPeer): void {
    const before = this.reported.get(peer) ?? 0;
    const blocks = peer.source.blocksReceived;
    if (blocks <= before) return;
    this.reported.set(peer, blocks);
    this.options.log(`LAN: fetched ${blocks - before} blocks from ${short(remote.peerId)} at ${peer.remoteAddress} (${mib(peer.source.bytesReceived)} on this connection)`);
  }
}
