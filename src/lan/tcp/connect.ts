import tls from 'node:tls';
import { BlockServer, type LiveBlockCheck } from '../../engine/block-server.ts';
import type { LocalBlockStore } from '../../engine/types.ts';
import type { Cursor, NamespaceId } from '../../protocol/index.ts';
import { LAN_PEER_ID_BYTES } from '../../protocol/lan-stream.ts';
import { makePskIdentity, namespaceSecrets } from './psk.ts';
import { ReusedReadBuffer, SocketFrameChannel, type SocketChannelOptions } from './socket-channel.ts';
import { startLanSession, type LanPeer, type LanSessionOptions, type SessionFailure } from './lan-session.ts';
import { LAN_TLS_VERSION, lanTlsOptions } from './tls-profile.ts';

export interface ConnectLanPeerOptions {
  host: string;
  port: number;
  ns: NamespaceId;
  /** The namespace's 32-byte LAN key (GET /api/v1/ns/:ns/lan-key). */
  lanKey: Uint8Array;
  /** Our LAN peer id (16 bytes). */
  peerId: Uint8Array;
  /** Our cursor for `ns`, sent in the hello. */
  cursor: Cursor;
  /** To serve the remote's requests on the same connection; without it they are refused. */
  serve?: { store: LocalBlockStore; isLiveBlock: LiveBlockCheck } | null;
  /** TCP connect and TLS handshake together. */
  handshakeTimeoutMs?: number;
  helloTimeoutMs?: number;
  /** Close the session after this long with nothing received and nothing in flight; default never. */
  idleTimeoutMs?: number;
  /** The session was closed for idleness (its onClose follows, with null). */
  onIdle?: () => void;
  channel?: SocketChannelOptions;
  link?: LanSessionOptions['link'];
  source?: LanSessionOptions['source'];
  signal?: AbortSignal;
  /**
   * Once, when the link closed after the promise resolved: with the failure that closed it
   * (`isProtocolFailure` tells a remote that broke the protocol), or null for a plain close.
   */
  onClose?: (failure: SessionFailure | null) => void;
  /** The remote's cursor rose (a later hello). */
  onCursor?: LanSessionOptions['onCursor'];
}

/** The connection could not be set up; `stage` says how far it got. */
export class LanConnectError extends Error {
  override readonly name = 'LanConnectError';
  constructor(
    readonly stage: 'connect' | 'handshake' | 'hello',
    message: string,
    options?: { cause?: unknown; failure?: SessionFailure },
  ) {
    super(message, options);
    this.failure = options?.failure ?? null;
  }
  /** At the hello stage: why the session failed, if it failed rather than closed. */
  readonly failure: SessionFailure | null;
}

/**
 * Connects to a LAN peer's block service for one namespace: TLS 1.3 with the namespace's
 * PSK under a fresh unlinkable identity, then the hello exchange. Resolves with a LanPeer
 * whose `source` the scheduler can use.
 */
export function connectLanPeer(options: ConnectLanPeerOptions): Promise<LanPeer> {
  if (options.peerId.length !== LAN_PEER_ID_BYTES) throw new RangeError(`a LAN peer id is ${LAN_PEER_ID_BYTES} bytes`);
  const secrets = namespaceSecrets(options.ns, options.lanKey);
  const blocks = options.serve ? new BlockServer(options.serve.store, options.serve.isLiveBlock) : null;
  return new Promise<LanPeer>((resolve, reject) => {
    let settled = false;
    let connected = false;
    const settle = (error: LanConnectError | null, peer?: LanPeer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (error) {
        socket.destroy();
        reject(error);
      } else resolve(peer!);
    };
    // Reads into one reused buffer, handed to the channel once the session starts.
    const reader = new ReusedReadBuffer();
    const socket = tls.connect({
      ...lanTlsOptions,
      // Node's tls.connect documents `onread` (used when it makes the socket); its types lack it.
      ...({ onread: reader.onread } as object),
      host: options.host,
      port: options.port,
      // No certificate: the PSK authenticates both ends.
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ psk: secrets.psk, identity: makePskIdentity(secrets.identityKey) }),
    });
    socket.setNoDelay(true);
    const timer = setTimeout(
      () => settle(new LanConnectError(connected ? 'handshake' : 'connect', 'LAN peer did not complete the TLS handshake in time')),
      options.handshakeTimeoutMs ?? 10_000,
    );
    const onAbort = () => settle(new LanConnectError(connected ? 'handshake' : 'connect', 'aborted', { cause: options.signal!.reason }));
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      connected = true;
      socket.setKeepAlive(true, 30_000);
    });
    const onHandshakeError = (error: Error) =>
      settle(new LanConnectError(connected ? 'handshake' : 'connect', error.message, { cause: error }));
    socket.on('error', onHandshakeError);
    socket.once('close', () => settle(new LanConnectError(connected ? 'handshake' : 'connect', 'the LAN peer closed the connection')));
    socket.once('secureConnect', () => {
      if (socket.getProtocol() !== LAN_TLS_VERSION) {
        return settle(new LanConnectError('handshake', `negotiated ${socket.getProtocol()}, not ${LAN_TLS_VERSION}`));
      }
      clearTimeout(timer);
      socket.off('error', onHandshakeError);
      let failure: SessionFailure | null = null;
      startLanSession({
        channel: new SocketFrameChannel(socket, { ...options.channel, reader }),
        ns: options.ns,
        localPeerId: options.peerId,
        localCursor: options.cursor,
        remoteAddress: `${options.host}:${options.port}`,
        blocks,
        helloTimeoutMs: options.helloTimeoutMs ?? 10_000,
        idleTimeoutMs: options.idleTimeoutMs,
        onIdle: options.onIdle,
        link: options.link,
        source: options.source,
        onFailure: (reason) => (failure = reason),
        onClose: options.onClose,
        onCursor: options.onCursor,
      }).then(
        (peer) => settle(null, peer),
        (error: unknown) =>
          settle(new LanConnectError('hello', error instanceof Error ? error.message : String(error), { cause: error, failure: failure ?? undefined })),
      );
    });
  });
}
