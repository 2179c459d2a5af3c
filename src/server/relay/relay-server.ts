import { randomBytes } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { Server, type Socket } from 'socket.io';
import {
  ADVERT_TTL_MS,
  MAX_PEERS_LISTED,
  MAX_RELAY_ERROR_MESSAGE,
  RELAY_PATH,
  RelayEvent,
  ValidationError,
  parseAdvertIn,
  parseBridgeFetchIn,
  parsePeersIn,
  parseRelayAuth,
  parseSignalIn,
  type AdvertOut,
  type BridgeFetchReply,
  type BridgePieceOut,
  BRIDGE_BATCH_QUERY,
  type BridgeReadOut,
  type BridgeStreamReply,
  type NamespaceId,
  type PeerId,
  type PeerLeft,
  type PeersOut,
  type RelayError,
  type RelayErrorCode,
  type SignalOut,
  type Welcome,
} from '../../protocol/index.ts';
import type { Logger } from '../log.ts';
import { StoreUnavailableError } from '../storage/store-errors.ts';
import type { Metrics } from '../metrics.ts';
import type { RelayBackend } from '../backends/index.ts';
import { InMemoryAdvertTable, type AdvertTable } from './advert-table.ts';
import type { BridgeSocket, RelayBridge } from './bridge-port.ts';
import { InMemoryPeerDirectory, type PeerDirectory } from './peer-directory.ts';
import { TokenBucket } from './rate-limit.ts';
import { throttledLog } from './throttled-log.ts';

/** Relay settings (ServerOptions.relay); every field has a default. */
export interface RelayOptions {
  /** Drop an advert unheard for this long (ms); default 90 s. */
  advertTtlMs?: number;
  /** How often to look for expired adverts (ms); default 5 s. */
  sweepIntervalMs?: number;
  /** Per-socket event rate: `eventsPerSecond` sustained, `eventBurst` at once; default 50/s, burst 200. */
  eventsPerSecond?: number;
  eventBurst?: number;
  /** Refused events (invalid, unknown, forbidden) a socket may send before it is disconnected; default 10. */
  maxStrikes?: number;
  /** Largest socket.io message (bytes); a bigger one closes the connection. Default 128 KiB. */
  maxPayloadBytes?: number;
}

export interface RelayDeps {
  /** The namespace of a well-formed member token, or null when the token is unknown. */
  namespaceOfToken(token: string): Promise<NamespaceId | null>;
  metrics: Metrics;
  logger: Logger;
  /** Adverts, peers and room broadcasts: in process, or shared with other instances (Redis). */
  shared?: RelayBackend;
  /** The LAN bridge (LAN_BRIDGE=1): LAN peers in this instance's peer lists, and bridge-fetch. */
  bridge?: RelayBridge | null;
}

interface ServerToClientEvents {
  welcome: (welcome: Welcome) => void;
  advert: (advert: AdvertOut) => void;
  peers: (peers: PeersOut) => void;
  signal: (signal: SignalOut) => void;
  'peer-left': (left: PeerLeft) => void;
  'relay-error': (error: RelayError) => void;
  'bridge-read': (read: BridgeReadOut, ack: (reply: unknown) => void) => void;
  'bridge-piece': (piece: BridgePieceOut, ack: (reply: unknown) => void) => void;
}
// Peers' events are all taken by one onAny() dispatcher, which validates each payload.
type ClientToServerEvents = Record<string, never>;
interface SocketData {
  namespaces: NamespaceId[];
  label: string;
}
type RelaySocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

interface Peer {
  id: PeerId;
  label: string;
  namespaces: NamespaceId[];
  socket: RelaySocket;
  bucket: TokenBucket;
  strikes: number;
  /** The peer as the LAN bridge sees it. */
  bridged: BridgeSocket;
  gone: AbortController;
}

/** Raised in a handler to refuse one event with a relay-error. */
class Refusal extends Error {
  constructor(
    readonly code: RelayErrorCode,
    message: string,
    /** Whether the refusal counts towards maxStrikes (a misbehaving client, not a race). */
    readonly strike = true,
  ) {
    super(message);
  }
}

/** Extra message when a handshake is refused; clients read it as `connect_error` `err.data`. */
class HandshakeError extends Error {
  constructor(
    message: 'unauthorized' | 'invalid' | 'internal' | 'unavailable',
    readonly data?: { field?: string; message: string },
  ) {
    super(message);
  }
}

const newPeerId = (): PeerId => `p_${randomBytes(12).toString('base64url')}` as PeerId;
const nsRoom = (ns: NamespaceId) => `ns:${ns}`;
const peerRoom = (peerId: PeerId) => `peer:${peerId}`;
/** How long close() lets WebSocket connections finish their closing handshake. */
const CLOSE_GRACE_MS = 1_000;

/**
 * The socket.io relay: rooms per namespace, peer download advertisements and WebRTC
 * signalling between peers that share a namespace (docs/protocol.md, "Relay events").
 */
export class RelayServer {
  private readonly io: Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
  private readonly peers = new Map<PeerId, Peer>();
  private readonly table: AdvertTable;
  private readonly directory: PeerDirectory;
  private readonly ttlMs: number;
  private readonly eventsPerSecond: number;
  private readonly eventBurst: number;
  private readonly maxStrikes: number;
  private readonly sweepTimer: ReturnType<typeof setInterval>;
  /** Upgraded (WebSocket) connections, so close() can end them. */
  private readonly upgraded = new Set<Duplex>();
  private readonly onUpgrade = (_req: unknown, socket: Duplex) => {
    this.upgraded.add(socket);
    socket.once('close', () => this.upgraded.delete(socket));
  };
  private closing: Promise<void> | null = null;
  /** Clean-ups of departed peers still under way (directory, adverts, peer-left), which close() lets finish. */
  private readonly departures = new Set<Promise<void>>();
  /** While the shared store is away every event fails alike: say so without a line per event. */
  private readonly storeUnavailable = throttledLog((msg, fields) => this.deps.logger.warn(msg, fields));

  constructor(
    private readonly httpServer: HttpServer,
    private readonly deps: RelayDeps,
    options: RelayOptions = {},
  ) {
    this.table = deps.shared?.advertTable ?? new InMemoryAdvertTable();
    this.directory = deps.shared?.peerDirectory ?? new InMemoryPeerDirectory();
    this.ttlMs = positive(options.advertTtlMs, ADVERT_TTL_MS, 'advertTtlMs');
    this.eventsPerSecond = positive(options.eventsPerSecond, 50, 'eventsPerSecond');
    this.eventBurst = positive(options.eventBurst, 200, 'eventBurst');
    this.maxStrikes = positive(options.maxStrikes, 10, 'maxStrikes');
    const sweepMs = positive(options.sweepIntervalMs, 5_000, 'sweepIntervalMs');
    this.io = new Server(httpServer, {
      path: RELAY_PATH,
      serveClient: false,
      maxHttpBufferSize: positive(options.maxPayloadBytes, 128 * 1024, 'maxPayloadBytes'),
      connectTimeout: 10_000,
      ...(deps.shared?.adapter ? { adapter: deps.shared.adapter } : {}),
    });
    httpServer.on('upgrade', this.onUpgrade);
    // The bridge speaks to this instance's sockets only: each instance bridges for its own.
    deps.bridge?.attach({
      advert: (advert) => this.io.local.to(nsRoom(advert.ns)).emit(RelayEvent.advert, advert),
      peerLeft: (left) => this.io.local.to(nsRoom(left.ns)).emit(RelayEvent.peerLeft, left),
    });
    this.io.use((socket, next) => {
      this.handshake(socket).then(
        () => next(),
        (err: unknown) => {
          if (err instanceof StoreUnavailableError) {
            // The token lookup's database is away: a retry later will do, unlike a refusal.
            err = new HandshakeError('unavailable');
          } else if (!(err instanceof HandshakeError)) {
            this.deps.logger.error('relay handshake failed', { err });
            err = new HandshakeError('internal');
          }
          const refusal = err as HandshakeError & { data?: unknown };
          this.deps.logger.info('relay connection refused', { reason: refusal.message, field: refusal.data?.field });
          next(refusal);
        },
      );
    });
    this.io.on('connection', (socket) => this.onConnection(socket));
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((err: unknown) => this.logFailure('relay sweep failed', err));
    }, sweepMs);
    this.sweepTimer.unref();
  }

  /** Disconnects every peer, stops accepting, and ends WebSocket connections (bounded wait). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.sweepTimer);
      // Closing the transports, not disconnectSockets(): clients read "io server disconnect" as
      // being sent away and stay away, while a closed transport makes them reconnect, which
      // behind a load balancer lands them on another instance. (Only this instance's
      // sockets: the engine is local.) Not io.close(): that also closes the HTTP server,
      // which app.ts closes in its own order.
      this.io.engine.close();
      const deadline = Date.now() + CLOSE_GRACE_MS;
      while (this.upgraded.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      for (const socket of this.upgraded) socket.destroy();
      this.httpServer.off('upgrade', this.onUpgrade);
      // The peers' adverts and directory entries go now, while the stores are still open, so
      // peers on other instances hear peer-left at once rather than at expiry.
      const departed = Date.now() + CLOSE_GRACE_MS;
      while (this.departures.size > 0 && Date.now() < departed) {
        await Promise.race([Promise.allSettled([...this.departures]), new Promise((r) => setTimeout(r, Math.max(1, departed - Date.now())))]);
      }
    })();
    return this.closing;
  }

  /** Validates `auth` and looks every token up; the socket learns its namespaces and label. */
  private async handshake(socket: RelaySocket): Promise<void> {
    let auth;
    try {
      auth = parseRelayAuth(socket.handshake.auth);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      // Missing or malformed credentials are "unauthorized"; any other bad field is "invalid".
      const credentials = err.field === 'auth' || err.field.startsWith('auth.tokens');
      throw credentials ? new HandshakeError('unauthorized') : new HandshakeError('invalid', { field: err.field, message: err.message });
    }
    const namespaces = new Set<NamespaceId>();
    for (const token of auth.tokens) {
      const ns = await this.deps.namespaceOfToken(token);
      if (!ns) throw new HandshakeError('unauthorized');
      namespaces.add(ns);
    }
    socket.data.namespaces = [...namespaces];
    socket.data.label = auth.label;
  }

  private onConnection(socket: RelaySocket): void {
    const id = newPeerId();
    const gone = new AbortController();
    const peer: Peer = {
      id,
      label: socket.data.label,
      namespaces: socket.data.namespaces,
      socket,
      bucket: new TokenBucket(this.eventsPerSecond, this.eventBurst),
      strikes: 0,
      gone,
      bridged: {
        peerId: id,
        namespaces: socket.data.namespaces,
        gone: gone.signal,
        // A hint, not a credential: any value but "1" is an older or other client, sent single pieces.
        batchPieces: socket.handshake.query[BRIDGE_BATCH_QUERY] === '1',
        read: (request, timeoutMs) => socket.timeout(timeoutMs).emitWithAck(RelayEvent.bridgeRead, request),
        piece: (piece, timeoutMs) => socket.timeout(timeoutMs).emitWithAck(RelayEvent.bridgePiece, piece),
      },
    };
    this.peers.set(peer.id, peer);
    this.deps.bridge?.socketJoined(peer.bridged);
    this.deps.metrics.relaySockets++;
    this.deps.logger.debug('relay peer connected', { peerId: peer.id, namespaces: peer.namespaces.length });
    socket.join([peerRoom(peer.id), ...peer.namespaces.map(nsRoom)]);
    const registered = this.directory.register(peer.id, peer.namespaces).catch((err: unknown) => {
      this.deps.logger.error('relay peer registration failed', { err, peerId: peer.id });
    });
    socket.on('disconnect', (reason) => {
      this.peers.delete(peer.id);
      gone.abort();
      this.deps.bridge?.socketLeft(peer.bridged);
      this.deps.metrics.relaySockets--;
      this.deps.logger.debug('relay peer disconnected', { peerId: peer.id, reason });
      const departure = registered
        .then(() => this.directory.unregister(peer.id))
        .then(() => this.dropPeer(peer.id))
        .catch((err: unknown) => this.logFailure('relay drop failed', err))
        .finally(() => this.departures.delete(departure));
      this.departures.add(departure);
    });
    socket.onAny((event: unknown, ...args: unknown[]) => this.onEvent(peer, event, args));

    // Behind a bridge, LAN peers' adverts may follow the first peers list by a moment: the
    // client then holds its server fetches a little longer for them.
    socket.emit(RelayEvent.welcome, { peerId: peer.id, namespaces: peer.namespaces, ...(this.deps.bridge ? { lanBridge: true } : {}) });
    // Joined the rooms first: an advert arriving meanwhile is delivered, never missed.
    (async () => {
      for (const ns of peer.namespaces) {
        const list = await this.peersOf(ns, peer.id);
        if (!socket.connected) return;
        socket.emit(RelayEvent.peers, list);
      }
    })().catch((err: unknown) => {
      this.logFailure('relay peers list failed', err);
      if (!(err instanceof StoreUnavailableError)) return;
      // The peer can ask again with a `peers` request.
      if (socket.connected) this.sendError(peer, 'unavailable', 'the relay cannot list peers right now; ask again shortly');
    });
  }

  private onEvent(peer: Peer, event: unknown, args: unknown[]): void {
    if (!peer.socket.connected) return;
    if (!peer.bucket.take()) {
      this.deps.logger.warn('relay peer over rate limit: disconnected', { peerId: peer.id });
      this.sendError(peer, 'rate_limited', `more than ${this.eventsPerSecond} events a second (burst ${this.eventBurst})`);
      peer.socket.disconnect(true);
      return;
    }
    const ack = typeof args[args.length - 1] === 'function' ? (args.pop() as (reply: unknown) => void) : undefined;
    this.handle(peer, event, args, ack).catch((err: unknown) => {
      if (err instanceof Refusal) return this.refuse(peer, err);
      if (err instanceof ValidationError) return this.refuse(peer, new Refusal('invalid', err.message));
      if (err instanceof StoreUnavailableError) {
        this.logFailure('relay event failed', err);
        // Not a strike: the peer did nothing wrong, and its next advert or request may get through.
        return this.refuse(peer, new Refusal('unavailable', `the relay cannot handle ${String(event)} right now; retry shortly`, false));
      }
      this.deps.logger.error('relay event failed', { err, event: String(event) });
    });
  }

  private async handle(peer: Peer, event: unknown, args: unknown[], ack?: (reply: unknown) => void): Promise<void> {
    const known = event === RelayEvent.advert || event === RelayEvent.peers || event === RelayEvent.signal || event === RelayEvent.bridgeFetch;
    if (!known) throw new Refusal('unknown_event', `unknown event ${JSON.stringify(String(event).slice(0, 64))}`);
    if (event === RelayEvent.bridgeFetch) return this.onBridgeFetch(peer, args, ack);
    if (args.length !== 1) throw new Refusal('invalid', `${event}: takes exactly one payload`);
    const payload = args[0];
    if (event === RelayEvent.advert) return this.onAdvert(peer, payload);
    if (event === RelayEvent.peers) return this.onPeers(peer, payload, ack);
    return this.onSignal(peer, payload);
  }

  /**
   * A block from a LAN peer through the bridge, answered by acknowledgement. Refusals are
   * acknowledged too (the browser waits for its answer), and those of a misbehaving client
   * (malformed, another namespace) are also relay errors that count as strikes.
   */
  private async onBridgeFetch(peer: Peer, args: unknown[], ack?: (reply: unknown) => void): Promise<void> {
    const reply = (answer: BridgeFetchReply | BridgeStreamReply) => {
      if (ack && peer.socket.connected) ack(answer);
    };
    const refuse = (code: 'invalid' | 'forbidden', message: string): never => {
      this.deps.bridge?.refused(code);
      reply({ ok: false, code, message });
      throw new Refusal(code, message);
    };
    if (!ack) refuse('invalid', `${RelayEvent.bridgeFetch}: needs an acknowledgement`);
    if (args.length !== 1) refuse('invalid', `${RelayEvent.bridgeFetch}: takes exactly one payload`);
    let request;
    try {
      request = parseBridgeFetchIn(args[0]);
    } catch (err) {
      if (err instanceof ValidationError) refuse('invalid', err.message);
      throw err;
    }
    if (!peer.namespaces.includes(request.ns)) refuse('forbidden', `this connection holds no token of namespace ${request.ns}`);
    const bridge = this.deps.bridge;
    if (!bridge) {
      reply({ ok: false, code: 'unavailable', message: 'this server runs no LAN bridge' });
      return;
    }
    let answer: BridgeFetchReply | BridgeStreamReply;
    try {
      const stream = request.stream;
      answer = stream === undefined ? await bridge.fetch(peer.bridged, request) : await bridge.fetchStream(peer.bridged, { ...request, stream });
    } catch (err) {
      // A fault of ours: the browser still gets its answer rather than waiting for a timeout.
      reply({ ok: false, code: 'unavailable', message: 'the LAN bridge failed; try another source' });
      throw err;
    }
    reply(answer);
  }

  private async onAdvert(peer: Peer, payload: unknown): Promise<void> {
    const { ns, cursor } = parseAdvertIn(payload);
    this.requireMember(peer, ns);
    const advert: AdvertOut = { peerId: peer.id, label: peer.label, ns, cursor, at: Date.now() };
    const previous = await this.table.put(advert, this.ttlMs);
    if (!peer.socket.connected) {
      // Disconnected while the table was writing: undo, the drop may have run before the put.
      await this.dropPeer(peer.id);
      return;
    }
    // A refresh with an unchanged cursor only renews the advert's lease: members know it already.
    this.deps.bridge?.browserAdvert(peer.bridged, ns, cursor);
    if (previous && previous.cursor === cursor) return;
    this.deps.metrics.advertsRelayed++;
    peer.socket.to(nsRoom(ns)).emit(RelayEvent.advert, advert);
  }

  private async onPeers(peer: Peer, payload: unknown, ack?: (reply: unknown) => void): Promise<void> {
    const { ns } = parsePeersIn(payload);
    this.requireMember(peer, ns);
    const list = await this.peersOf(ns, peer.id);
    if (!peer.socket.connected) return;
    if (ack) ack(list);
    else peer.socket.emit(RelayEvent.peers, list);
  }

  private async onSignal(peer: Peer, payload: unknown): Promise<void> {
    const { to, data } = parseSignalIn(payload);
    if (to === peer.id) throw new Refusal('invalid', 'signal.to: is this peer itself');
    // A LAN peer is reached through bridge-fetch, never signalled: refused like an unknown peer.
    if (this.deps.bridge?.isLanPeer(to)) throw new Refusal('no_shared_namespace', `peer ${to} shares no namespace with this peer`, false);
    // A peer on this instance is known at once; one on another instance is in the shared directory.
    const targetNamespaces = this.peers.get(to)?.namespaces ?? (await this.directory.namespacesOf(to)) ?? [];
    const shared = peer.namespaces.filter((ns) => targetNamespaces.includes(ns));
    // An unknown peer and a peer of other namespaces get the same answer: ids reveal nothing.
    // Not a strike: the target may just have left while signals were on their way.
    if (shared.length === 0) throw new Refusal('no_shared_namespace', `peer ${to} shares no namespace with this peer`, false);
    if (!peer.socket.connected) return;
    const signal: SignalOut = { from: peer.id, namespaces: shared, data };
    // The target's own room: delivered on whichever instance holds its socket.
    this.io.to(peerRoom(to)).emit(RelayEvent.signal, signal);
    this.deps.metrics.signalsRelayed++;
  }

  /** A store that is away is an outage (warned, throttled); anything else is a bug (an error with its stack). */
  private logFailure(msg: string, err: unknown): void {
    if (err instanceof StoreUnavailableError) this.storeUnavailable(`${msg}: ${err.engine} unavailable`, { err: err.message });
    else this.deps.logger.error(msg, { err });
  }

  private requireMember(peer: Peer, ns: NamespaceId): void {
    if (!peer.namespaces.includes(ns)) throw new Refusal('forbidden', `this connection holds no token of namespace ${ns}`);
  }

  private async peersOf(ns: NamespaceId, self: PeerId): Promise<PeersOut> {
    const adverts = await this.table.list(ns, MAX_PEERS_LISTED + 1);
    const browsers = adverts.filter((advert) => advert.peerId !== self);
    const lan = this.deps.bridge?.lanAdverts(ns) ?? [];
    // LAN peers first: a handful at most, and the list is cut at MAX_PEERS_LISTED.
    return { ns, peers: [...lan, ...browsers].slice(0, MAX_PEERS_LISTED) };
  }

  private refuse(peer: Peer, refusal: Refusal): void {
    if (!peer.socket.connected) return;
    this.sendError(peer, refusal.code, refusal.message);
    if (!refusal.strike) return;
    peer.strikes++;
    if (peer.strikes >= this.maxStrikes) {
      this.deps.logger.warn('relay peer sent too many refused events: disconnected', { peerId: peer.id, strikes: peer.strikes });
      this.sendError(peer, 'too_many_errors', `${peer.strikes} refused events: disconnecting`);
      peer.socket.disconnect(true);
    }
  }

  private sendError(peer: Peer, code: RelayErrorCode, message: string): void {
    const text = message.length > MAX_RELAY_ERROR_MESSAGE ? `${message.slice(0, MAX_RELAY_ERROR_MESSAGE - 1)}…` : message;
    peer.socket.emit(RelayEvent.error, { code, message: text });
  }

  /** Removes a gone peer's adverts and tells the members of each namespace. */
  private async dropPeer(peerId: PeerId): Promise<void> {
    for (const advert of await this.table.removePeer(peerId)) {
      this.io.to(nsRoom(advert.ns)).emit(RelayEvent.peerLeft, { peerId, ns: advert.ns });
    }
  }

  /** Drops adverts unheard for advertTtlMs; their peers may still be connected, and advert again. */
  private async sweep(): Promise<void> {
    for (const advert of await this.table.expire(Date.now() - this.ttlMs)) {
      this.io.to(nsRoom(advert.ns)).except(peerRoom(advert.peerId)).emit(RelayEvent.peerLeft, { peerId: advert.peerId, ns: advert.ns });
    }
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!(value > 0) || !Number.isFinite(value)) throw new RangeError(`relay option ${name} must be a positive number`);
  return value;
}
