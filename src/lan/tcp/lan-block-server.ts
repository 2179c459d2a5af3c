import net from 'node:net';
import tls from 'node:tls';
import { BlockServer, type LiveBlockCheck } from '../../engine/block-server.ts';
import type { LocalBlockStore } from '../../engine/types.ts';
import { NACK_REASONS, type Cursor, type NackReason, type NamespaceId } from '../../protocol/index.ts';
import { LAN_PEER_ID_BYTES } from '../../protocol/lan-stream.ts';
import { PskKeyring } from './psk.ts';
import { SocketFrameChannel, type SocketChannelOptions } from './socket-channel.ts';
import { startLanSession, type LanPeer, type LanSessionOptions, type SessionFailure } from './lan-session.ts';
import { lanServerSecureOptions, lanTlsOptions } from './tls-profile.ts';

/** Why the server dropped a connection; each has a counter in `stats.refused`. */
export type LanRefusal =
  | 'connection_limit'
  | 'address_limit'
  | 'unknown_identity'
  | 'handshake_failed'
  | 'handshake_timeout'
  | SessionFailure;

export const LAN_REFUSALS: readonly LanRefusal[] = [
  'connection_limit',
  'address_limit',
  'unknown_identity',
  'handshake_failed',
  'handshake_timeout',
  'bad_hello',
  'hello_timeout',
  'oversize',
  'bad_stream',
  'bad_frame',
  'backlog',
  'stalled',
];

export interface LanBlockServerOptions {
  /** Address to bind (the daemon's LAN address; tests use 127.0.0.1). */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** This daemon's LAN peer id (16 bytes, the one in its UDP adverts). */
  peerId: Uint8Array;
  /** Blocks this device holds … */
  store: LocalBlockStore;
  /** … of which those of live files of a namespace may be served for it. */
  isLiveBlock: LiveBlockCheck;
  /** Our cursor for `ns`, sent in the hello (the value our adverts claim). */
  cursorOf: (ns: NamespaceId) => Cursor;
  /** A session is up: the daemon may also fetch from the remote through `peer.source`. */
  onPeer?: (peer: LanPeer) => void;
  /** A peer handed to `onPeer` closed: with the failure that closed it, or null for a plain close. */
  onPeerClosed?: (peer: LanPeer, failure: SessionFailure | null) => void;
  /** The cursor of a peer handed to `onPeer` rose (a later hello). */
  onPeerCursor?: (peer: LanPeer) => void;
  /** Open connections, handshaking or not. */
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  /** From accept to the end of the TLS handshake. */
  handshakeTimeoutMs?: number;
  /** From the handshake to the remote's hello. */
  helloTimeoutMs?: number;
  /**
   * After the hello, a connection with nothing received and nothing in flight for this long
   * is closed (a plain close, counted in `stats.idleClosed`). Default 120 s; 0: never.
   */
  idleTimeoutMs?: number;
  /** Requests of one remote queued or being served at once (more are NACKed busy). */
  maxServingPerConnection?: number;
  channel?: SocketChannelOptions;
  link?: LanSessionOptions['link'];
}

export interface LanBlockServerStats {
  /** TCP connections accepted (before any check). */
  accepted: number;
  /** Connections that completed TLS and the hello exchange. */
  sessions: number;
  /** Connections open now. */
  open: number;
  refused: Record<LanRefusal, number>;
  /** Sessions closed for idleness (idleTimeoutMs). */
  idleClosed: number;
  /**
   * Requests of remotes we refused, by reason: `forbidden` names a namespace the connection
   * did not prove, `not_found` a block that is not of a live file of it here.
   */
  nacked: Record<NackReason, number>;
}

/**
 * Node passes `pskCallback` of a server-side TLSSocket to OpenSSL as it does for tls.Server
 * (checked on Node 20); @types/node lists it only for tls.Server and tls.connect.
 */
type PskServerSocketOptions = tls.TLSSocketOptions & {
  pskCallback: (socket: tls.TLSSocket, identity: string) => Uint8Array | null;
};

const DEFAULTS = {
  maxConnections: 64,
  maxConnectionsPerAddress: 8,
  handshakeTimeoutMs: 10_000,
  helloTimeoutMs: 10_000,
  idleTimeoutMs: 120_000,
  maxServingPerConnection: 16,
};

/**
 * The LAN block service: a TCP listener whose connections must complete TLS 1.3 with a PSK
 * derived from one of our namespaces' LAN keys, then exchange hellos. Each connection then
 * runs a PeerLink that shares exactly that one namespace, so a remote is served only blocks
 * of live files of the namespace it proved. Connections are bounded in total and per
 * remote address; every refusal is counted by reason.
 */
export class LanBlockServer {
  private readonly keyring = new PskKeyring();
  private readonly blocks: BlockServer;
  private readonly limits: typeof DEFAULTS;
  private readonly listener: net.Server;
  private readonly perAddress = new Map<string, number>();
  private readonly sockets = new Set<tls.TLSSocket>();
  private readonly peers = new Set<LanPeer>();
  private readonly secureContext: tls.SecureContext;
  readonly stats: LanBlockServerStats = {
    accepted: 0,
    sessions: 0,
    open: 0,
    refused: Object.fromEntries(LAN_REFUSALS.map((reason) => [reason, 0])) as Record<LanRefusal, number>,
    idleClosed: 0,
    nacked: Object.fromEntries(NACK_REASONS.map((reason) => [reason, 0])) as Record<NackReason, number>,
  };

  constructor(private readonly options: LanBlockServerOptions) {
    if (options.peerId.length !== LAN_PEER_ID_BYTES) throw new RangeError(`a LAN peer id is ${LAN_PEER_ID_BYTES} bytes`);
    this.blocks = new BlockServer(options.store, options.isLiveBlock);
    this.limits = {
      maxConnections: options.maxConnections ?? DEFAULTS.maxConnections,
      maxConnectionsPerAddress: options.maxConnectionsPerAddress ?? DEFAULTS.maxConnectionsPerAddress,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULTS.handshakeTimeoutMs,
      helloTimeoutMs: options.helloTimeoutMs ?? DEFAULTS.helloTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs,
      maxServingPerConnection: options.maxServingPerConnection ?? DEFAULTS.maxServingPerConnection,
    };
    this.secureContext = tls.createSecureContext({ ...lanTlsOptions, secureOptions: lanServerSecureOptions });
    this.listener = net.createServer((socket) => this.accept(socket));
  }

  /** Serves `ns` to holders of `lanKey` (replacing an older key closes that namespace's connections). */
  setNamespace(ns: NamespaceId, lanKey: Uint8Array): void {
    const before = this.keyring.pskOf(ns);
    this.keyring.set(ns, lanKey);
    if (before && !before.equals(this.keyring.pskOf(ns)!)) this.closeNamespace(ns);
  }

  /** Stops serving `ns`: its connections close. */
  removeNamespace(ns: NamespaceId): void {
    this.keyring.delete(ns);
    this.closeNamespace(ns);
  }

  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen(this.options.port, this.options.host, () => {
        this.listener.off('error', reject);
        const address = this.listener.address() as net.AddressInfo;
        resolve({ host: address.address, port: address.port });
      });
    });
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.listener.close(() => resolve()));
    for (const peer of [...this.peers]) peer.close();
    for (const socket of [...this.sockets]) socket.destroy();
    await closed;
  }

  /** Sessions up now (for the daemon's status and tests). */
  openPeers(): LanPeer[] {
    return [...this.peers];
  }

  private refuse(reason: LanRefusal): void {
    this.stats.refused[reason] += 1;
  }

  private accept(raw: net.Socket): void {
    this.stats.accepted += 1;
    raw.on('error', () => {});
    const address = raw.remoteAddress ?? '?';
    if (this.sockets.size >= this.limits.maxConnections) {
      this.refuse('connection_limit');
      raw.destroy();
      return;
    }
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (fromAddress >= this.limits.maxConnectionsPerAddress) {
      this.refuse('address_limit');
      raw.destroy();
      return;
    }
    raw.setNoDelay(true);
    raw.setKeepAlive(true, 30_000);
    // The TLS socket takes over the raw socket's handle: only the TLS socket reports 'close'.
    const socket = this.handshake(raw);
    this.sockets.add(socket);
    this.perAddress.set(address, fromAddress + 1);
    this.stats.open = this.sockets.size;
    socket.once('close', () => {
      this.sockets.delete(socket);
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left > 0) this.perAddress.set(address, left);
      else this.perAddress.delete(address);
      this.stats.open = this.sockets.size;
    });
  }

  private handshake(raw: net.Socket): tls.TLSSocket {
    let ns: NamespaceId | null = null;
    let psk: Buffer | null = null;
    let refused = false;
    const refuseOnce = (reason: LanRefusal) => {
      if (refused) return;
      refused = true;
      this.refuse(reason);
    };
    const socketOptions: PskServerSocketOptions = {
      isServer: true,
      secureContext: this.secureContext,
      pskCallback: (_socket, identity) => {
        const found = this.keyring.find(identity);
        if (!found) {
          refuseOnce('unknown_identity');
          return null;
        }
        ns = found.ns;
        psk = found.psk;
        return found.psk;
      },
    };
    const socket = new tls.TLSSocket(raw, socketOptions);
    const timer = setTimeout(() => {
      refuseOnce('handshake_timeout');
      socket.destroy();
    }, this.limits.handshakeTimeoutMs);
    let secured = false;
    const onHandshakeError = () => {
      clearTimeout(timer);
      refuseOnce('handshake_failed');
      socket.destroy();
    };
    socket.on('error', onHandshakeError);
    socket.once('close', () => {
      clearTimeout(timer);
      // Left during the handshake without an error (a port scan, a client giving up).
      if (!secured) refuseOnce('handshake_failed');
    });
    socket.once('secure', () => {
      secured = true;
      clearTimeout(timer);
      // Only a handshake that went through our callback, on a key still current, names a namespace.
      if (ns === null || psk === null || !psk.equals(this.keyring.pskOf(ns) ?? Buffer.alloc(0))) {
        refuseOnce('handshake_failed');
        socket.destroy();
        return;
      }
      socket.off('error', onHandshakeError);
      this.startSession(socket, ns, raw.remoteAddress ?? '?');
    });
    return socket;
  }

  private startSession(socket: tls.TLSSocket, ns: NamespaceId, address: string): void {
    const channel = new SocketFrameChannel(socket, this.options.channel);
    channel.onnack = (reason) => (this.stats.nacked[reason] += 1);
    let peer: LanPeer | null = null;
    let handedOut = false;
    startLanSession({
      channel,
      ns,
      localPeerId: this.options.peerId,
      localCursor: this.options.cursorOf(ns),
      remoteAddress: address,
      blocks: this.blocks,
      helloTimeoutMs: this.limits.helloTimeoutMs,
      idleTimeoutMs: this.limits.idleTimeoutMs,
      onIdle: () => (this.stats.idleClosed += 1),
      link: { maxServing: this.limits.maxServingPerConnection, ...this.options.link },
      onFailure: (reason) => this.refuse(reason),
      onCursor: () => {
        if (peer && handedOut) this.options.onPeerCursor?.(peer);
      },
      onClose: (failure) => {
        if (peer) this.peers.delete(peer);
        if (peer && handedOut) this.options.onPeerClosed?.(peer, failure);
      },
    }).then(
      (started) => {
        peer = started;
        if (!started.link.isOpen) return;
        this.peers.add(started);
        this.stats.sessions += 1;
        handedOut = true;
        this.options.onPeer?.(started);
      },
      () => {
        // Counted by onFailure (or the remote just left).
      },
    );
  }

  private closeNamespace(ns: NamespaceId): void {
    for (const peer of [...this.peers]) if (peer.ns === ns) peer.close();
  }
}
