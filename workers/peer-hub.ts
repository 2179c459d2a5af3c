import type { PieceTaps } from '../src/engine/piece-taps.ts';
import type { BlockBufferPool } from '../src/engine/block-buffers.ts';
import { BlockServer } from '../src/engine/block-server.ts';
import { frameChannelOf, type DataChannelLike } from '../src/engine/frame-channel.ts';
import type { NamespaceSync } from '../src/engine/namespace-sync.ts';
import { PeerLink } from '../src/engine/peer-link.ts';
import { PeerBlockSource } from '../src/engine/peer-source.ts';
import type { BlockSource, LocalBlockStore, WantedBlock } from '../src/engine/types.ts';
import type { BlockHash, BridgeReadOut, BridgeReadReply, NamespaceId } from '../src/protocol/index.ts';
import { BridgeReads } from './bridge-reads.ts';
import { BridgedPeers } from './bridged-peers.ts';
import { frameChannelOfPort } from './port-frame-channel.ts';
import type { PeerAdvert, PeerTransport, PeerView } from './sync-api.ts';

const MAX_CONNECTIONS = 8;
const HAVE_BATCH_MS = 100;
const WANT_INTERVAL_MS = 1_000;
/** How long the server waits for the relay's first list of peers before serving anyway. */
const DISCOVERY_GRACE_MS = 3_000;
/**
 * Behind a LAN bridge, how long the server also waits for a LAN peer's advert after the
 * relay's first list: the bridge asks the LAN when a workspace's first browser arrives, and
 * the daemons answer within a moment (they wait as long for each other).
 */
const LAN_DISCOVERY_GRACE_MS = 1_500;
/** How long blocks an advertising peer can serve wait for the connection to it. */
const CONNECT_GRACE_MS = 10_000;
/** A peer whose connection failed is not waited for again for this long. */
const RETRY_AFTER_MS = 30_000;
/** How long a block a connected peer said it is fetching from the server waits for its HAVE. */
const FETCHING_GRACE_MS = 30_000;
/**
 * Outstanding FETCHING claims honoured per peer. An honest peer has a few server fetches in
 * flight; the cap bounds what a peer that never follows with HAVE can hold back.
 */
const MAX_FETCHING_CLAIMS_PER_PEER = 16;

/**
 * A peer that advertised blocks we lack but is not connected yet. It claims those blocks
 * with no capacity, so the scheduler keeps them waiting for the connection instead of
 * asking the server, until the grace period ends or the connection fails.
 */
class ProspectivePeer implements BlockSource {
  readonly kind = 'peer' as const;
  readonly maxInFlight = 0;
  constructor(
    readonly id: string,
    private readonly ns: NamespaceId,
    private readonly cursor: number,
  ) {}
  canServe(want: WantedBlock): boolean {
    return want.ns === this.ns && this.cursor >= want.sjid;
  }
  fetchBlock(): Promise<Uint8Array> {
    return Promise.reject(new Error('not connected yet'));
  }
}

/**
 * Blocks connected peers are fetching from the server right now (their FETCHING frames):
 * claimed with no capacity, so this device waits for the peer's HAVE instead of pulling the
 * same block from the server too. That is what makes joiners starting together pull each
 * block from the server about once.
 */
class PeersFetching implements BlockSource {
  readonly id = 'peers-fetching';
  readonly kind = 'peer' as const;
  readonly maxInFlight = 0;
  constructor(private readonly claims: (want: WantedBlock) => boolean) {}
  canServe(want: WantedBlock): boolean {
    return this.claims(want);
  }
  fetchBlock(): Promise<Uint8Array> {
    return Promise.reject(new Error('the peer has not got it yet'));
  }
}

interface ConnectedPeer {
  label: string;
  link: PeerLink;
  source: PeerBlockSource;
}

export interface PeerHubOptions {
  ns: NamespaceId;
  blocks: LocalBlockStore;
  /** The engine of this workspace, once this tab leads. */
  engine: () => NamespaceSync | null;
  /** Peers came or went: the scheduler should look at its sources again. */
  onSourcesChanged: () => void;
  /** What peers say about these blocks changed: the scheduler should look at them again. */
  onBlocksChanged: (hashes: readonly BlockHash[]) => void;
  onChange: () => void;
  /** Buffers that large blocks from peers are received into (see PeerLinkOptions.buffers). */
  buffers?: BlockBufferPool;
  /** Blocks readers wait for: peer fetches feed them piece by piece (piece-taps.ts). */
  taps?: PieceTaps;
}

/**
 * The workspace's peers inside the sync worker: one PeerLink + PeerBlockSource per block
 * channel the page hands over, the adverts the relay reported, which peers to ask the page
 * to connect to, and HAVE announcements of blocks stored while a sync is under way.
 */
export class PeerHub {
  private readonly connected = new Map<string, ConnectedPeer>();
  private adverts = new Map<string, PeerAdvert>();
  private transport: PeerTransport | null = null;
  private readonly server: BlockServer;
  private pendingHave: BlockHash[] = [];
  private haveTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly wantTimer: ReturnType<typeof setInterval>;
  /** The peers blocks were waiting for at the last tick (ids, sorted): a change wakes the scheduler. */
  private waitingFor = '';
  private lastAdvertised: number | null = null;
  /** Until the relay lists the peers (or the grace ends), the server waits. */
  private discovered = false;
  private readonly discoveryTimer: ReturnType<typeof setTimeout>;
  private lanGraceTimer: ReturnType<typeof setTimeout> | null = null;
  /** When each advertising, unconnected peer was first waited for. */
  private readonly waitingSince = new Map<string, number>();
  /** Peers whose connection failed, and when. */
  private readonly failedAt = new Map<string, number>();
  /** Blocks peers announced they are fetching from the server: hash → peer and when. */
  private readonly fetchingByPeers = new Map<BlockHash, { peerId: string; at: number }>();
  /** Peers caught lying or breaking the protocol: their claims count for nothing. */
  private readonly penalisedPeers = new Set<string>();
  /** Verified bytes stored from each peer. */
  private readonly acceptedBytes = new Map<string, number>();
  /** Block bytes sent on links to each peer that have closed (an open link counts its own). */
  private readonly sentOnClosedLinks = new Map<string, number>();
  private pendingFetching: BlockHash[] = [];
  /** This page's relay id: decides which of two devices fetching the same block gives way. */
  private selfId: string | null = null;
  private fetchingScheduled = false;
  private readonly peersFetching = new PeersFetching((want) => this.peerIsFetching(want.hash));
  /** LAN peers reached through the server's bridge (adverts marked `lan`). */
  private readonly bridged: BridgedPeers;
  private readonly bridgeReads: BridgeReads;

  constructor(private readonly options: PeerHubOptions) {
    this.discoveryTimer = setTimeout(() => this.markDiscovered(), DISCOVERY_GRACE_MS);
    this.server = new BlockServer(options.blocks, async (ns, hash) => {
      return ns === options.ns && (options.engine()?.holdsLiveBlock(hash) ?? false);
    });
    this.wantTimer = setInterval(() => this.askForPeers(), WANT_INTERVAL_MS);
    this.bridged = new BridgedPeers(options.ns, options.taps ?? null);
    this.bridgeReads = new BridgeReads(options.ns, options.blocks, (hash) => options.engine()?.holdsLiveBlock(hash) ?? false);
  }

  /** Connected peers, then peers still worth waiting for. */
  sources(): BlockSource[] {
    const open = [...this.connected.values()].filter((peer) => peer.link.isOpen);
    const sources: BlockSource[] = [...open.map((peer) => peer.source), ...this.bridged.list()];
    const now = Date.now();
    for (const advert of this.adverts.values()) {
      if (advert.lan) continue;
      // Connecting counts as not connected yet: its channel is handed over before it opens.
      if (this.connected.get(advert.peerId)?.link.isOpen || !this.worthWaitingFor(advert.peerId, now)) continue;
      sources.push(new ProspectivePeer(advert.peerId, this.options.ns, advert.cursor));
    }
    if (this.fetchingByPeers.size > 0) sources.push(this.peersFetching);
    return sources;
  }

  /** The server as a source that holds back until the peers are known. */
  gateServer(server: BlockSource): BlockSource {
    const gated: BlockSource = {
      id: server.id,
      kind: server.kind,
      maxInFlight: server.maxInFlight,
      maxBatch: server.maxBatch,
      canServe: (want) => this.discovered && server.canServe(want),
      fetchBlock: (want, signal) => server.fetchBlock(want, signal),
      ...(server.release ? { release: server.release.bind(server) } : {}),
    };
    const fetchBlocks = server.fetchBlocks?.bind(server);
    return fetchBlocks ? { ...gated, fetchBlocks } : gated;
  }

  attachTransport(transport: PeerTransport): void {
    this.transport = transport;
    this.bridged.attachTransport(transport);
    this.options.onSourcesChanged();
    if (this.lastAdvertised !== null) transport.advertise(this.lastAdvertised);
    this.askForPeers();
  }

  /** Sends our download advertisement (called on start and whenever the synced cursor moves). */
  advertise(cursor: number): void {
    this.lastAdvertised = cursor;
    this.transport?.advertise(cursor);
  }

  setAdverts(adverts: PeerAdvert[], lanBridge = false): void {
    this.adverts = new Map(adverts.map((advert) => [advert.peerId, advert]));
    this.bridged.update(adverts);
    if (!lanBridge || adverts.some((advert) => advert.lan)) this.markDiscovered();
    else this.lanGraceTimer ??= setTimeout(() => this.markDiscovered(), LAN_DISCOVERY_GRACE_MS);
    for (const [peerId, peer] of this.connected) {
      const advert = this.adverts.get(peerId);
      if (advert) {
        peer.source.setAdvert(this.options.ns, advert.cursor);
        peer.label = advert.label;
      } else peer.source.clearAdvert(this.options.ns);
    }
    this.options.onSourcesChanged();
    this.askForPeers();
    this.options.onChange();
  }

  attachChannel(peer: { peerId: string; label: string }, channel: RTCDataChannel | MessagePort): void {
    // A new connection replaces an old one; that is no failure of the peer's.
    this.connected.get(peer.peerId)?.link.close();
    this.connected.delete(peer.peerId);
    this.failedAt.delete(peer.peerId);
    const frames =
      channel instanceof MessagePort ? frameChannelOfPort(channel) : frameChannelOf(channel as unknown as DataChannelLike);
    const ns = this.options.ns;
    const link = new PeerLink({
      channel: frames,
      sharedNamespaces: [ns],
      server: this.server,
      buffers: this.options.buffers ?? null,
      onOpen: () => {
        this.announceHeldBlocks(link);
        // Server fetches that began before this link opened were announced to nobody here.
        const fetching = this.options.engine()?.serverFetchesInFlight() ?? [];
        if (fetching.length > 0) link.sendFetching(ns, fetching);
        this.options.onSourcesChanged();
        this.options.onChange();
      },
      onHave: (_ns, hashes) => {
        for (const hash of hashes) this.fetchingByPeers.delete(hash);
        this.options.onBlocksChanged(hashes);
      },
      onFetching: (_ns, hashes) => {
        if (this.penalisedPeers.has(peer.peerId)) return;
        const at = Date.now();
        let claims = this.claimsOf(peer.peerId);
        const accepted: BlockHash[] = [];
        for (const hash of hashes) {
          if (claims >= MAX_FETCHING_CLAIMS_PER_PEER) break;
          if (this.fetchingByPeers.has(hash)) continue;
          this.fetchingByPeers.set(hash, { peerId: peer.peerId, at });
          accepted.push(hash);
          claims += 1;
        }
        // Both of us started the same block from the server: by a rule both sides apply
        // alike, the larger relay id gives way and waits for the other's HAVE.
        const engine = this.options.engine();
        if (engine && this.selfId !== null && this.selfId > peer.peerId) {
          for (const hash of accepted) engine.yieldServerFetch(hash);
        }
        this.options.onBlocksChanged(accepted);
      },
      onProtocolError: (error) => {
        console.warn(`nearsync: peer ${peer.peerId} sent a malformed frame: ${error.message}`);
        this.options.engine()?.penalise(peer.peerId);
      },
      onClose: () => {
        this.sentOnClosedLinks.set(peer.peerId, (this.sentOnClosedLinks.get(peer.peerId) ?? 0) + link.bytesSent);
        if (this.connected.get(peer.peerId)?.link === link) this.connected.delete(peer.peerId);
        this.forgetFetchingBy(peer.peerId);
        this.failedAt.set(peer.peerId, Date.now());
        this.options.onSourcesChanged();
        this.options.onChange();
      },
    });
    const source = new PeerBlockSource(peer.peerId, link, { taps: this.options.taps ?? null });
    const advert = this.adverts.get(peer.peerId);
    if (advert) source.setAdvert(ns, advert.cursor);
    this.connected.set(peer.peerId, { label: advert?.label ?? peer.label, link, source });
    this.options.onChange();
  }

  detach(peerId: string): void {
    const peer = this.connected.get(peerId);
    this.failedAt.set(peerId, Date.now());
    this.forgetFetchingBy(peerId);
    if (!peer) {
      this.options.onSourcesChanged();
      return;
    }
    this.connected.delete(peerId);
    peer.link.close();
    this.options.onSourcesChanged();
  }

  setSelfId(peerId: string): void {
    this.selfId = peerId;
  }

  /** This device began fetching a block from the server: tell connected peers at once. */
  serverFetchStarted(hash: BlockHash): void {
    if (this.connected.size === 0) return;
    this.pendingFetching.push(hash);
    if (this.fetchingScheduled) return;
    this.fetchingScheduled = true;
    // Same-tick starts travel in one frame; later is too late (others would start too).
    queueMicrotask(() => {
      this.fetchingScheduled = false;
      const hashes = this.pendingFetching;
      this.pendingFetching = [];
      for (const peer of this.connected.values()) peer.link.sendFetching(this.options.ns, hashes);
    });
  }

  /** A peer was caught lying or breaking the protocol: forget what it claimed to be fetching. */
  penalised(peerId: string): void {
    this.penalisedPeers.add(peerId);
    this.forgetFetchingBy(peerId);
    this.options.onSourcesChanged();
    this.options.onChange();
  }

  /** A block was stored here: tell connected peers, batched, so joiners can trade. */
  blockStored(hash: BlockHash, bytes: number, sourceId: string): void {
    if (this.connected.has(sourceId) || this.bridged.has(sourceId)) this.acceptedBytes.set(sourceId, (this.acceptedBytes.get(sourceId) ?? 0) + bytes);
    if (this.connected.size === 0) return;
    this.pendingHave.push(hash);
    this.haveTimer ??= setTimeout(() => {
      this.haveTimer = null;
      const hashes = this.pendingHave;
      this.pendingHave = [];
      for (const peer of this.connected.values()) peer.link.sendHave(this.options.ns, hashes);
    }, HAVE_BATCH_MS);
  }

  views(): PeerView[] {
    const ids = new Set([...this.adverts.keys(), ...this.connected.keys()]);
    return [...ids]
      .map((peerId) => {
        const advert = this.adverts.get(peerId);
        const peer = this.connected.get(peerId);
        return {
          peerId,
          label: advert?.label ?? peer?.label ?? 'Browser',
          cursor: advert?.cursor ?? null,
          connected: advert?.lan ? this.transport !== null : (peer?.link.isOpen ?? false),
          lan: advert?.lan === true,
          bytesReceived: this.acceptedBytes.get(peerId) ?? 0,
          bytesSent: (this.sentOnClosedLinks.get(peerId) ?? 0) + (peer?.link.bytesSent ?? 0),
          penalised: this.penalisedPeers.has(peerId),
        };
      })
      .sort((a, b) => a.label.localeCompare(b.label) || a.peerId.localeCompare(b.peerId));
  }

  close(): void {
    clearInterval(this.wantTimer);
    clearTimeout(this.discoveryTimer);
    if (this.lanGraceTimer) clearTimeout(this.lanGraceTimer);
    if (this.haveTimer) clearTimeout(this.haveTimer);
    for (const peerId of [...this.connected.keys()]) this.detach(peerId);
    this.transport = null;
    this.bridged.attachTransport(null);
  }

  /** The server's LAN bridge reads part of a block for a LAN peer. */
  bridgeRead(read: BridgeReadOut): Promise<BridgeReadReply> {
    return this.bridgeReads.read(read);
  }

  /**
   * While this device lacks blocks, ask the page to connect to the workspace's peers, the
   * furthest ahead first: those ahead can serve by advert, and those syncing alongside
   * trade what each fetched (HAVE). Once synced, peers come to us instead.
   */
  private askForPeers(): void {
    this.endWaitsThatRanOut();
    const engine = this.options.engine();
    if (!this.transport || !engine || !engine.isMissingBlocks()) return;
    const room = MAX_CONNECTIONS - this.connected.size;
    if (room <= 0) return;
    const candidates = [...this.adverts.values()]
      .filter((advert) => !advert.lan && !this.connected.has(advert.peerId) && this.mayRetry(advert.peerId, Date.now()))
      .sort((a, b) => b.cursor - a.cursor)
      .slice(0, room)
      .map((advert) => advert.peerId);
    if (candidates.length > 0) this.transport.wantPeers(candidates);
  }

  /**
   * Waits that ran out let the server take over the blocks they held back. Only what changed
   * is looked at again: a claim that expired, its block; the peers still worth waiting for,
   * every block (rare). A wake of every parked block each second cost O(parked) per second.
   */
  private endWaitsThatRanOut(): void {
    const now = Date.now();
    const expired: BlockHash[] = [];
    for (const [hash, claim] of this.fetchingByPeers) {
      if (now - claim.at > FETCHING_GRACE_MS) {
        this.fetchingByPeers.delete(hash);
        expired.push(hash);
      }
    }
    if (expired.length > 0) this.options.onBlocksChanged(expired);
    const waitingFor = [...this.adverts.values()]
      .filter((advert) => !advert.lan && !this.connected.get(advert.peerId)?.link.isOpen && this.worthWaitingFor(advert.peerId, now))
      .map((advert) => advert.peerId)
      .sort()
      .join(' ');
    if (waitingFor !== this.waitingFor) {
      this.waitingFor = waitingFor;
      this.options.onSourcesChanged();
    }
  }

  private peerIsFetching(hash: BlockHash): boolean {
    const claim = this.fetchingByPeers.get(hash);
    if (!claim) return false;
    if (Date.now() - claim.at > FETCHING_GRACE_MS || !this.connected.get(claim.peerId)?.link.isOpen) {
      this.fetchingByPeers.delete(hash);
      return false;
    }
    return true;
  }

  private claimsOf(peerId: string): number {
    let claims = 0;
    for (const claim of this.fetchingByPeers.values()) if (claim.peerId === peerId) claims += 1;
    return claims;
  }

  private forgetFetchingBy(peerId: string): void {
    for (const [hash, claim] of this.fetchingByPeers) if (claim.peerId === peerId) this.fetchingByPeers.delete(hash);
  }

  private markDiscovered(): void {
    if (this.discovered) return;
    this.discovered = true;
    clearTimeout(this.discoveryTimer);
    if (this.lanGraceTimer) clearTimeout(this.lanGraceTimer);
    this.options.onSourcesChanged();
  }

  private mayRetry(peerId: string, now: number): boolean {
    const failed = this.failedAt.get(peerId);
    return failed === undefined || now - failed > RETRY_AFTER_MS;
  }

  private worthWaitingFor(peerId: string, now: number): boolean {
    if (!this.mayRetry(peerId, now)) return false;
    const since = this.waitingSince.get(peerId);
    if (since === undefined) {
      this.waitingSince.set(peerId, now);
      return true;
    }
    return now - since < CONNECT_GRACE_MS;
  }

  private announceHeldBlocks(link: PeerLink): void {
    const engine = this.options.engine();
    if (!engine || !engine.isMissingBlocks()) return;
    const held = engine.heldLiveBlocks();
    if (held.length > 0) link.sendHave(this.options.ns, held);
  }
}
