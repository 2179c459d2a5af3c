import { createHash, randomBytes } from 'node:crypto';
import {
  ADVERT_TTL_MS,
  BRIDGE_ERROR_CODES,
  LAN_PEER_ID_BYTES,
  MAX_BRIDGE_FETCHES_PER_SOCKET,
  parseBridgePieceAck,
  type AdvertOut,
  type BlockHash,
  type BlockPieces,
  type BridgeErrorCode,
  type BridgeFailure,
  type BridgeStreamReply,
  type BridgeFetchIn,
  type BridgeFetchReply,
  type Cursor,
  type LanBridgeMetrics,
  type NamespaceId,
  type PeerId,
} from '../../protocol/index.ts';
import { PeerLinkError, PeerNackError, type PeerLink } from '../../engine/peer-link.ts';
import { LanAdvertListener, LanAdvertiser, NewcomerAnswer, type LanPeerAdvert } from '../../lan/discovery/index.ts';
import { LanBlockServer } from '../../lan/tcp/lan-block-server.ts';
import { MAX_KEYRING_NAMESPACES } from '../../lan/tcp/psk.ts';
import { banKey, plainIp } from '../../lan/lan-ban.ts';
import type { Logger } from '../log.ts';
import type { BridgeSocket, RelayBridge, RelayOutlet } from '../relay/bridge-port.ts';
import type { MetadataStore } from '../storage/metadata-store.ts';
import { BrowserAdverts } from './browser-adverts.ts';
import { BrowserBlockStore } from './browser-block-store.ts';
import { LanLinks, LinkUnavailableError } from './lan-links.ts';
import { LanPeerAdverts, type BridgedLanPeer } from './lan-peer-adverts.ts';
import { LanRelayIds } from './relay-peer-ids.ts';
import { BATCHED_PIECES, PieceRelay, PieceRelayError, SINGLE_PIECES } from './piece-relay.ts';
import { Slots } from '../slots.ts';

/** Where the bridge listens and announces (LAN_PORT, LAN_TCP_PORT, LAN_BIND, LAN_BROADCAST). */
export interface LanBridgeOptions {
  /** UDP port of LAN adverts, heard and sent (default 17600). */
  udpPort: number;
  /** TCP port of the bridge's block service; 0 picks a free one (the adverts carry it). */
  tcpPort: number;
  /** Address the block service listens on and adverts are sent from (LAN_BIND). */
  bindAddress: string;
  /**
   * Address the advert listener binds: default all (0.0.0.0), since Linux delivers a
   * broadcast only to a socket bound to all addresses or to the broadcast address itself.
   */
  udpListenAddress?: string;
  /** Where adverts go (one datagram to each); empty: the bridge only listens. */
  broadcastAddresses: readonly string[];
  /** One bridge-read's answer (default 10 s). */
  readTimeoutMs?: number;
  /** bridge-reads in flight for one block (default 4). */
  readsInFlight?: number;
  /** Blocks assembled from browsers at once (default 8, so 32 MiB at most). */
  assemblySlots?: number;
  /** Browsers tried for one block a LAN peer wants (default 3). */
  browsersPerBlock?: number;
  /** First redial delay after a link closed or failed (default 500 ms). */
  backoffMs?: number;
}

export interface LanBridgeDeps {
  metadata: Pick<MetadataStore, 'lanKey' | 'namespaceReferencesBlock'>;
  /** Piece hashes the server already computed for a block it holds (trusted): streamed pieces are checked as they pass. */
  knownPieces?: (hash: BlockHash) => BlockPieces | null;
  logger: Logger;
}


const zeroes = <K extends string>(keys: readonly K[]) => Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
const short = (peerId: string) => peerId.slice(0, 8);
/** A browser that holds a piece unacknowledged this long is taken to be gone: the stream stops. */
const PIECE_ACK_TIMEOUT_MS = 30_000;

/**
 * The server's LAN bridge (docs/protocol.md "LAN bridge"). For the namespaces of the relay
 * sockets on this instance it hears LAN adverts and shows each proven LAN peer to those
 * browsers as a relay peer marked `lan`; a browser's `bridge-fetch` is fetched over a TLS-PSK
 * link to the LAN peer and verified before it is answered. The other way, it advertises on
 * the LAN the highest cursor the browsers here advertised and serves LAN peers' requests by
 * pulling the block from those browsers with `bridge-read`. Each instance bridges for its own
 * sockets only; nothing goes through the shared (Redis) relay state.
 */
export class LanBridge implements RelayBridge {
  readonly peerId = new Uint8Array(randomBytes(LAN_PEER_ID_BYTES));
  private readonly listener: LanAdvertListener;
  private readonly server: LanBlockServer;
  private advertiser: LanAdvertiser | null = null;
  private readonly relayIds = new LanRelayIds();
  private readonly lanPeers = new LanPeerAdverts(this.relayIds);
  private readonly browsers = new BrowserAdverts<BridgeSocket>(ADVERT_TTL_MS);
  private readonly store: BrowserBlockStore;
  private readonly links: LanLinks;
  /** Sockets of each namespace on this instance. */
  private readonly members = new Map<NamespaceId, Set<BridgeSocket>>();
  /** LAN keys of the namespaces bridged now (loaded; at most MAX_KEYRING_NAMESPACES). */
  private readonly keys = new Map<NamespaceId, Uint8Array>();
  private readonly loading = new Set<NamespaceId>();
  /** Namespaces in our own LAN adverts (a browser of each advertised). */
  private readonly advertised = new Set<NamespaceId>();
  private readonly banned = new Set<string>();
  private readonly fetchesOf = new Map<BridgeSocket, number>();
  /** Stream ids of each socket's streamed fetches in flight. */
  private readonly streamsOf = new Map<BridgeSocket, Set<number>>();
  private outlet: RelayOutlet | null = null;
  private readonly answer = new NewcomerAnswer(() => void this.advertiser?.send());
  private warnedFull = false;
  private started = false;
  private boundPort = 0;
  private closed = false;
  private readonly counts = {
    bytesLanToBrowsers: 0,
    bytesBrowsersToLan: 0,
    fetchesOk: 0,
    fetchesFailed: zeroes(BRIDGE_ERROR_CODES),
    lanRequestsServed: 0,
    lanRequestsNotFound: 0,
    browserReadFailures: zeroes(['refused', 'malformed', 'timeout', 'gone', 'bad_block'] as const),
  };

  constructor(
    private readonly options: LanBridgeOptions,
    private readonly deps: LanBridgeDeps,
  ) {
    this.store = new BrowserBlockStore({
      browsersOf: (ns) => this.browsers.browsersOf(ns),
      referencesBlock: (ns, hash) => deps.metadata.namespaceReferencesBlock(ns, hash),
      slots: new Slots(options.assemblySlots ?? 8),
      maxBrowsers: options.browsersPerBlock ?? 3,
      timeoutMs: options.readTimeoutMs ?? 10_000,
      parallel: options.readsInFlight ?? 4,
      onPulled: (bytes) => {
        this.counts.bytesBrowsersToLan += bytes;
        this.counts.lanRequestsServed += 1;
      },
      onBrowserFailed: (error) => {
        this.counts.browserReadFailures[error.reason] += 1;
        this.deps.logger.info('LAN bridge: a browser failed a bridge-read', { reason: error.reason, err: error.message });
      },
    });
    const serve = { store: this.store, isLiveBlock: this.countNotFound(this.store.isLiveBlock) };
    this.links = new LanLinks({
      peerId: this.peerId,
      lanKeyOf: (ns) => this.keys.get(ns),
      cursorOf: (ns) => this.cursorOf(ns),
      serve,
      onProtocolFailure: (peerId, address, failure) => this.ban(peerId, address, `broke the LAN protocol (${failure})`),
      backoffMs: options.backoffMs,
    });
    this.server = new LanBlockServer({
      host: options.bindAddress,
      port: options.tcpPort,
      peerId: this.peerId,
      ...serve,
      cursorOf: (ns) => this.cursorOf(ns),
      onPeer: (peer) => (this.banned.has(banKey(peer.remotePeerId, peer.remoteAddress)) ? peer.close() : this.links.adopt(peer)),
      onPeerClosed: (peer, failure) => this.links.closedSession(peer, failure),
    });
    this.listener = new LanAdvertListener({
      port: options.udpPort,
      bindAddress: options.udpListenAddress ?? '0.0.0.0',
      ownPeerId: this.peerId,
      onAdvert: (advert) => this.heard(advert),
      onExpired: (advert) => this.expired(advert),
    });
  }

  async start(): Promise<void> {
    const { port } = await this.server.listen();
    this.boundPort = port;
    try {
      await this.listener.start();
      if (this.options.broadcastAddresses.length > 0) {
        this.advertiser = new LanAdvertiser({
          tcpPort: port,
          broadcastAddress: this.options.broadcastAddresses,
          port: this.options.udpPort,
          bindAddress: this.options.bindAddress,
          peerId: this.peerId,
        });
        await this.advertiser.start();
      }
    } catch (error) {
      await Promise.allSettled([this.listener.close(), this.server.close(), this.advertiser?.close()]);
      throw error;
    }
    this.started = true;
    // Namespaces whose sockets arrived before start: their keys are loaded now.
    for (const [ns, key] of this.keys) this.enableNamespace(ns, key);
    const to = this.options.broadcastAddresses.length > 0 ? this.options.broadcastAddresses.join(', ') : 'nowhere (no IPv4 LAN interface)';
    this.deps.logger.info('LAN bridge started', { tcp: `${this.options.bindAddress}:${port}`, udpPort: this.options.udpPort, adverts: to, peerId: short(Buffer.from(this.peerId).toString('hex')) });
  }

  /** Tells browsers the LAN peers left, closes the links and the sockets. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.answer.close();
    for (const peer of this.lanPeers.all()) this.outlet?.peerLeft({ peerId: peer.relayId, ns: peer.ns });
    this.links.closeAll();
    await Promise.allSettled([this.advertiser?.close(), this.listener.close(), this.server.close()]);
  }

  /** The TCP port of the block service (after start). */
  get tcpPort(): number {
    return this.boundPort;
  }

  /** The bridge's LAN peer id, hex (as in its adverts). */
  get lanPeerId(): string {
    return Buffer.from(this.peerId).toString('hex');
  }

  metrics(): LanBridgeMetrics {
    const udp = this.listener.counters();
    return {
      lanPeers: this.lanPeers.peerCount,
      namespaces: this.keys.size,
      links: this.links.openCount,
      bytesLanToBrowsers: this.counts.bytesLanToBrowsers,
      bytesBrowsersToLan: this.counts.bytesBrowsersToLan,
      fetchesOk: this.counts.fetchesOk,
      fetchesFailed: { ...this.counts.fetchesFailed },
      lanRequestsServed: this.counts.lanRequestsServed,
      lanRequestsNotFound: this.counts.lanRequestsNotFound,
      browserReadFailures: { ...this.counts.browserReadFailures },
      lanPeersBanned: this.banned.size,
      udpDatagrams: { ...udp },
      tcpRefused: { ...this.server.stats.refused },
    };
  }

  // ------------------------------------------------------------ relay side

  attach(outlet: RelayOutlet): void {
    this.outlet = outlet;
  }

  socketJoined(socket: BridgeSocket): void {
    if (this.closed) return;
    for (const ns of socket.namespaces) {
      let sockets = this.members.get(ns);
      if (!sockets) this.members.set(ns, (sockets = new Set()));
      sockets.add(socket);
      if (!this.keys.has(ns)) void this.loadKey(ns);
    }
  }

  socketLeft(socket: BridgeSocket): void {
    this.fetchesOf.delete(socket);
    this.streamsOf.delete(socket);
    for (const ns of this.browsers.remove(socket)) this.advertiseCursor(ns);
    for (const ns of socket.namespaces) {
      const sockets = this.members.get(ns);
      sockets?.delete(socket);
      if (sockets && sockets.size === 0) {
        this.members.delete(ns);
        this.disableNamespace(ns);
      }
    }
  }

  browserAdvert(socket: BridgeSocket, ns: NamespaceId, cursor: Cursor): void {
    if (this.closed) return;
    if (this.browsers.set(ns, socket, cursor) || !this.advertised.has(ns)) this.advertiseCursor(ns);
  }

  refused(code: BridgeErrorCode): void {
    this.counts.fetchesFailed[code] += 1;
  }

  lanAdverts(ns: NamespaceId): AdvertOut[] {
    return this.lanPeers.advertsOf(ns);
  }

  isLanPeer(peerId: PeerId): boolean {
    return this.lanPeers.has(peerId);
  }

  /** Store-and-forward: the whole block over the link, its hash checked, then all of it in the ack. */
  fetch(socket: BridgeSocket, request: BridgeFetchIn): Promise<BridgeFetchReply> {
    const { ns, hash } = request;
    return this.fetchThrough(socket, request, async (target, link) => {
      const bytes = await link.request(ns, hash, socket.gone);
      if (createHash('sha256').update(bytes).digest('hex') !== hash) return this.badBlock(target, `sent bytes that do not hash to ${hash}`);
      this.counts.fetchesOk += 1;
      this.counts.bytesLanToBrowsers += bytes.byteLength;
      return { ok: true, data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
    });
  }

  /**
   * Streamed (docs/protocol.md "Streamed bridge fetches"): each 64 KiB piece leaves for the
   * browser as soon as the link has it and the window allows, several to an event when the
   * socket asked for batches (PieceRelay's pacing); the
   * whole block is hashed on the way and the reply is the verdict. Pieces the server can
   * check (it knows the block's piece hashes) are checked before they leave.
   */
  async fetchStream(socket: BridgeSocket, request: BridgeFetchIn & { stream: number }): Promise<BridgeStreamReply> {
    const { ns, hash, stream } = request;
    let streams = this.streamsOf.get(socket);
    if (streams?.has(stream)) return this.failed('invalid', `stream ${stream} is already in flight on this connection`);
    if (!streams) this.streamsOf.set(socket, (streams = new Set()));
    streams.add(stream);
    try {
      return await this.fetchThrough(socket, request, async (target, link) => {
        const send = async (offset: number, bytes: Uint8Array) => {
          const ack = await socket.piece({ stream, offset, data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) }, PIECE_ACK_TIMEOUT_MS);
          return parseBridgePieceAck(ack).ok;
        };
        const relay = new PieceRelay(hash, send, socket.batchPieces ? BATCHED_PIECES : SINGLE_PIECES, this.deps.knownPieces?.(hash) ?? null);
        const stopped = (error: unknown): BridgeFailure => {
          if (!(error instanceof PieceRelayError)) throw error;
          if (error.reason === 'bad_piece') return this.badBlock(target, `sent a piece that does not match the block's piece hash (${error.message})`);
          return this.failed('unavailable', `the stream stopped: ${error.message}`);
        };
        let bytes: Uint8Array;
        try {
          bytes = await link.request(ns, hash, AbortSignal.any([socket.gone, relay.signal]), 0, { onChunk: (offset, chunk) => relay.take(offset, chunk) });
        } catch (error) {
          if (relay.signal.aborted && error === relay.signal.reason) return stopped(error);
          throw error;
        }
        let matched: boolean;
        try {
          matched = await relay.finish(bytes.byteLength);
        } catch (error) {
          return stopped(error);
        }
        if (!matched) return this.badBlock(target, `sent bytes that do not hash to ${hash}`);
        this.counts.fetchesOk += 1;
        this.counts.bytesLanToBrowsers += bytes.byteLength;
        return { ok: true, size: bytes.byteLength };
      });
    } finally {
      streams.delete(stream);
      if (streams.size === 0 && this.streamsOf.get(socket) === streams) this.streamsOf.delete(socket);
    }
  }

  /** The checks and bookkeeping every bridge fetch shares, and the mapping of link failures to codes. */
  private async fetchThrough<T extends BridgeFetchReply | BridgeStreamReply>(
    socket: BridgeSocket,
    request: BridgeFetchIn,
    fetch: (target: BridgedLanPeer, link: PeerLink) => Promise<T | BridgeFailure>,
  ): Promise<T | BridgeFailure> {
    const { ns, peerId, hash } = request;
    if (!socket.namespaces.includes(ns)) return this.failed('forbidden', `this connection holds no token of namespace ${ns}`);
    const target = this.lanPeers.find(peerId, ns);
    if (!target || this.banned.has(banKey(target.peerId, target.address))) return this.failed('not_found', `no LAN peer ${peerId} advertises namespace ${ns} here`);
    const inFlight = this.fetchesOf.get(socket) ?? 0;
    if (inFlight >= MAX_BRIDGE_FETCHES_PER_SOCKET) return this.failed('busy', `at most ${MAX_BRIDGE_FETCHES_PER_SOCKET} bridge fetches in flight per connection`);
    this.fetchesOf.set(socket, inFlight + 1);
    try {
      const peer = await this.links.linkTo(target);
      return await fetch(target, peer.link);
    } catch (error) {
      if (error instanceof PeerNackError) {
        if (error.reason === 'busy') return this.failed('busy', 'the LAN peer is busy; ask again shortly');
        if (error.reason === 'not_found' || error.reason === 'forbidden') return this.failed('not_found', `the LAN peer does not serve block ${hash}`);
        return this.failed('unavailable', `the LAN peer refused the block (${error.reason})`);
      }
      if (error instanceof LinkUnavailableError || error instanceof PeerLinkError) return this.failed('unavailable', error.message);
      if (socket.gone.aborted) return this.failed('unavailable', 'the connection closed');
      throw error;
    } finally {
      const left = (this.fetchesOf.get(socket) ?? 1) - 1;
      if (left > 0) this.fetchesOf.set(socket, left);
      else this.fetchesOf.delete(socket);
    }
  }

  // ------------------------------------------------------------ namespaces

  private async loadKey(ns: NamespaceId): Promise<void> {
    if (this.loading.has(ns)) return;
    if (this.keys.size + this.loading.size >= MAX_KEYRING_NAMESPACES) {
      if (!this.warnedFull) this.deps.logger.warn('LAN bridge: namespace limit reached; more are not bridged', { limit: MAX_KEYRING_NAMESPACES });
      this.warnedFull = true;
      return;
    }
    this.loading.add(ns);
    let key: Buffer;
    try {
      key = await this.deps.metadata.lanKey(ns);
    } catch (err) {
      // The next socket of the namespace tries again.
      this.deps.logger.warn('LAN bridge: could not load a LAN key', { ns, err });
      return;
    } finally {
      this.loading.delete(ns);
    }
    if (this.closed || !this.members.has(ns)) return;
    this.keys.set(ns, new Uint8Array(key));
    if (this.started) this.enableNamespace(ns, key);
  }

  private enableNamespace(ns: NamespaceId, key: Uint8Array): void {
    this.listener.setNamespace(ns, key);
    this.server.setNamespace(ns, key);
    this.advertiseCursor(ns);
  }

  private disableNamespace(ns: NamespaceId): void {
    if (!this.keys.delete(ns)) return;
    this.warnedFull = false;
    this.listener.deleteNamespace(ns);
    this.server.removeNamespace(ns);
    if (this.advertised.delete(ns)) this.advertiser?.deleteNamespace(ns);
    this.lanPeers.dropNamespace(ns);
    this.links.closeNamespace(ns);
  }

  /** What the bridge claims for `ns` on the LAN: the highest cursor a browser here advertised. */
  private cursorOf(ns: NamespaceId): Cursor {
    return (this.browsers.highest(ns) ?? 0) as Cursor;
  }

  /** Puts our LAN advert for `ns` in step with the browsers' adverts, and tells open links. */
  private advertiseCursor(ns: NamespaceId): void {
    const key = this.keys.get(ns);
    if (!key || !this.started || this.closed) return;
    const highest = this.browsers.highest(ns);
    if (highest === null) {
      if (this.advertised.delete(ns)) this.advertiser?.deleteNamespace(ns);
      return;
    }
    if (this.advertised.has(ns)) this.advertiser?.setCursor(ns, highest);
    else {
      this.advertised.add(ns);
      this.advertiser?.setNamespace(ns, key, highest);
    }
    this.links.sendCursor(ns, highest as Cursor);
  }

  // ------------------------------------------------------------ LAN side

  private heard(advert: LanPeerAdvert): void {
    if (this.closed || this.banned.has(banKey(advert.peerId, advert.address)) || !this.keys.has(advert.ns)) return;
    const isNew = this.lanPeers.find(this.relayIds.relayIdOf(advert.peerId), advert.ns) === null;
    const news = this.lanPeers.heard(advert);
    if (isNew) {
      this.deps.logger.info('LAN bridge: LAN peer heard', { lanPeer: short(advert.peerId), ns: advert.ns, address: `${advert.address}:${advert.tcpPort}`, cursor: advert.cursor });
      this.answerNewcomer();
    }
    if (news) this.outlet?.advert(news);
  }

  private expired(advert: LanPeerAdvert): void {
    const left = this.lanPeers.expired(advert);
    if (!left) return;
    this.links.closeLink(advert.peerId, advert.ns);
    this.outlet?.peerLeft(left);
  }

  /** A peer we had not heard learns of us now rather than at our next periodic advert. */
  private answerNewcomer(): void {
    if (this.advertiser && this.advertised.size > 0) this.answer.request();
  }

  /** Bans a LAN peer id at the address it misbehaved from (docs/protocol.md "Bans"). */
  private ban(peerId: string, address: string, why: string): void {
    const key = banKey(peerId, address);
    if (this.banned.has(key) || this.closed) return;
    this.banned.add(key);
    this.deps.logger.warn(`LAN bridge: LAN peer ${short(peerId)} at ${plainIp(address)} ${why}: ignored there for this run`, { lanPeer: peerId, address: plainIp(address) });
    for (const left of this.lanPeers.dropPeerAt(peerId, address)) this.outlet?.peerLeft(left);
    this.links.closePeerAt(peerId, address);
  }

  /** The LAN peer's bytes failed their hash: banned, and the browser told. */
  private badBlock(target: BridgedLanPeer, why: string): BridgeFailure {
    this.ban(target.peerId, target.address, why.startsWith('sent a piece') ? why : 'sent a block that does not match its hash');
    return this.failed('bad_block', `LAN peer ${target.relayId} ${why}`);
  }

  private failed(code: BridgeErrorCode, message: string): BridgeFailure {
    this.counts.fetchesFailed[code] += 1;
    return { ok: false, code, message };
  }

  private countNotFound(check: BrowserBlockStore['isLiveBlock']): BrowserBlockStore['isLiveBlock'] {
    return async (ns, hash) => {
      const found = await check(ns, hash);
      if (!found) this.counts.lanRequestsNotFound += 1;
      return found;
    };
  }
}
