import type { BlockServer } from '../../engine/block-server.ts';
import { PeerLink, type PeerLinkOptions } from '../../engine/peer-link.ts';
import { PeerBlockSource, type PeerBlockSourceOptions } from '../../engine/peer-source.ts';
import { MAX_DATA_BYTES, ValidationError, type Cursor, type NamespaceId } from '../../protocol/index.ts';
import { decodeHello, encodeHello, isHelloMessage, type LanHello } from '../../protocol/lan-stream.ts';
import type { SocketFrameChannel } from './socket-channel.ts';

/** Why a LAN connection was dropped after TLS (the server counts each). */
export type SessionFailure = 'bad_hello' | 'hello_timeout' | 'oversize' | 'bad_stream' | 'bad_frame' | 'backlog' | 'stalled';

/**
 * Failures only a remote that breaks the protocol causes (garbage, lies in a hello). A
 * timeout or a full send buffer can happen to an honest peer on a bad network.
 */
export function isProtocolFailure(reason: SessionFailure | null | undefined): boolean {
  return reason === 'bad_hello' || reason === 'oversize' || reason === 'bad_stream' || reason === 'bad_frame';
}

/** A proven, hello-exchanged link to one LAN peer for one namespace. */
export interface LanPeer {
  readonly ns: NamespaceId;
  /** The remote's LAN peer id, hex (as in its UDP adverts). */
  readonly remotePeerId: string;
  readonly remoteAddress: string;
  /** Both ways: fetch with `link.request` (or through `source`), serve the remote's requests. */
  readonly link: PeerLink;
  /** The remote as a scheduler block source; its advert follows the remote's hellos. */
  readonly source: PeerBlockSource;
  /** The remote's latest cursor for `ns`. */
  readonly remoteCursor: Cursor;
  /** Our bytes written and not yet taken by the network (bounded by the channel's limits). */
  readonly bufferedBytes: number;
  /** Tells the remote our cursor moved (a new hello). */
  sendCursor(cursor: Cursor): void;
  close(): void;
}

export interface LanSessionOptions {
  channel: SocketFrameChannel;
  ns: NamespaceId;
  localPeerId: Uint8Array;
  localCursor: Cursor;
  remoteAddress: string;
  /** Serves the remote's requests for `ns`; null refuses them all (forbidden). */
  blocks: BlockServer | null;
  helloTimeoutMs: number;
  /**
   * After the hello: a connection on which the remote sent nothing and nothing was in flight
   * (requests either way, unsent bytes) for this long is closed, plainly (onClose(null)).
   * Undefined or 0: never.
   */
  idleTimeoutMs?: number;
  /** The session was closed for idleness (just before its onClose). */
  onIdle?: () => void;
  link?: Partial<Omit<PeerLinkOptions, 'channel' | 'sharedNamespaces' | 'server' | 'onProtocolError' | 'onClose'>>;
  source?: PeerBlockSourceOptions;
  /** The session failed for this reason; the connection is closed already. */
  onFailure: (reason: SessionFailure, error?: Error) => void;
  /** A later hello raised the remote's cursor (`source` claims more now). */
  onCursor?: (cursor: Cursor) => void;
  /**
   * Once, when the link of a started session closed: with the failure that closed it, or
   * null for a plain close (either end, or the connection dropped).
   */
  onClose?: (failure: SessionFailure | null) => void;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/**
 * Runs the LAN session on a TLS connection proven for `ns`: sends our hello, waits for the
 * remote's (it must name exactly `ns`), then hands the channel to a PeerLink that shares
 * only `ns`. Later hellos from the remote (same peer id, same namespace) update its
 * cursor; anything else malformed closes the connection and is reported once.
 * Resolves with the peer, or rejects once the connection failed or closed first.
 */
export function startLanSession(options: LanSessionOptions): Promise<LanPeer> {
  const { channel, ns } = options;
  return new Promise<LanPeer>((resolve, reject) => {
    let peer: LanPeerImpl | null = null;
    let failed = false;
    let failure: SessionFailure | null = null;
    let lastHeardAt = Date.now();
    const fail = (reason: SessionFailure, error?: Error) => {
      if (failed) return;
      failed = true;
      failure = reason;
      clearTimeout(timer);
      channel.destroy();
      options.onFailure(reason, error);
      reject(error ?? new Error(`LAN session failed: ${reason}`));
    };
    const timer = setTimeout(() => fail('hello_timeout'), options.helloTimeoutMs);
    timer.unref?.();

    channel.onstreamerror = (error) => fail(error.field === 'stream.length' ? 'oversize' : 'bad_stream', error);
    channel.onbacklog = () => fail('backlog');
    // A remote that stopped reading; not a protocol error (a congested link looks the same), so no ban.
    channel.onstall = () => fail('stalled');
    channel.onclose = () => {
      clearTimeout(timer);
      if (!peer && !failed) {
        failed = true;
        reject(new Error('the LAN connection closed before the hello'));
      }
    };

    channel.intercept = (message) => {
      lastHeardAt = Date.now();
      if (peer) {
        if (!isHelloMessage(message)) return false;
        try {
          peer.onHello(checkHello(decodeHello(message), ns, peer.remotePeerId));
        } catch (error) {
          if (!(error instanceof ValidationError)) throw error;
          fail('bad_hello', error);
        }
        return true;
      }
      let hello: LanHello;
      try {
        if (!isHelloMessage(message)) throw new ValidationError('hello', 'the first message must be a hello');
        hello = checkHello(decodeHello(message), ns, null);
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
        fail('bad_hello', error);
        return true;
      }
      clearTimeout(timer);
      peer = new LanPeerImpl(options, hello, (error) => fail('bad_frame', error), () => failure);
      if (options.idleTimeoutMs) watchIdle(peer, options, () => Math.max(lastHeardAt, channel.lastReceivedAt));
      resolve(peer);
      return true;
    };

    try {
      channel.send(encodeHello({ peerId: options.localPeerId, cursors: [{ ns, cursor: options.localCursor }] }));
    } catch (error) {
      fail('backlog', error as Error);
    }
  });
}

/**
 * Closes an idle session: it holds a connection slot (and a peer slot at the dialler) that a
 * silent remote, honest or not, should not keep forever. Honest peers dial again when an
 * advert shows the other ahead, so nothing is lost but a reconnect.
 */
function watchIdle(peer: LanPeerImpl, options: LanSessionOptions, lastHeardAt: () => number): void {
  const idleMs = options.idleTimeoutMs!;
  let quietSince = lastHeardAt();
  const check = setInterval(() => {
    if (peer.link.isClosed) return clearInterval(check);
    const now = Date.now();
    const busy = peer.link.pendingRequests > 0 || peer.link.servingRequests > 0 || options.channel.bufferedAmount > 0;
    if (busy) quietSince = now;
    else quietSince = Math.max(quietSince, lastHeardAt());
    if (now - quietSince < idleMs) return;
    clearInterval(check);
    options.onIdle?.();
    peer.close();
  }, Math.max(50, Math.min(5_000, Math.floor(idleMs / 4))));
  check.unref?.();
}

/** The hello must name exactly the proven namespace, and keep the peer id it started with. */
function checkHello(hello: LanHello, ns: NamespaceId, peerId: string | null): LanHello {
  if (hello.cursors.length !== 1 || hello.cursors[0].ns !== ns) {
    throw new ValidationError('hello.cursors', 'must name exactly the namespace this connection proved');
  }
  if (peerId !== null && hex(hello.peerId) !== peerId) throw new ValidationError('hello.peerId', 'changed within a connection');
  return hello;
}

/**
 * How a LAN link serves blocks. The browser's 64 KiB DATA frames suit a data channel's
 * messages; a TCP stream has no message size to respect, so the largest frame the protocol
 * allows (17 per 4 MiB block instead of 64: fewer headers to write, decode and dispatch), and
 * up to 4 MiB queued in the socket before the serving loop waits (a veth moves 1 MiB in about a
 * millisecond: a 1 MiB mark left the loop waiting on the drain poll).
 */
const LAN_LINK_DEFAULTS = { chunkSize: MAX_DATA_BYTES, highWaterMark: 4 * 1024 * 1024, lowWaterMark: 1024 * 1024 } as const;

class LanPeerImpl implements LanPeer {
  readonly ns: NamespaceId;
  readonly remotePeerId: string;
  readonly remoteAddress: string;
  readonly link: PeerLink;
  readonly source: PeerBlockSource;
  remoteCursor: Cursor;

  constructor(
    private readonly options: LanSessionOptions,
    hello: LanHello,
    onBadFrame: (error: ValidationError) => void,
    failureOf: () => SessionFailure | null,
  ) {
    this.ns = options.ns;
    this.remotePeerId = hex(hello.peerId);
    this.remoteAddress = options.remoteAddress;
    this.remoteCursor = hello.cursors[0].cursor;
    this.link = new PeerLink({
      ...LAN_LINK_DEFAULTS,
      ...options.link,
      channel: options.channel,
      sharedNamespaces: [options.ns],
      server: options.blocks,
      onProtocolError: onBadFrame,
      // PeerLink closes before it reports a bad frame, and a stream error closes the socket
      // before it is reported: wait a tick so the failure that closed the link is known.
      onClose: () => queueMicrotask(() => options.onClose?.(failureOf())),
    });
    // The address is part of the id: the engine penalises a source id for good, and a member
    // that claims another's peer id must not get that other penalised.
    this.source = new PeerBlockSource(`lan:${this.remotePeerId}@${this.remoteAddress}`, this.link, options.source);
    this.source.setAdvert(this.ns, this.remoteCursor);
  }

  get bufferedBytes(): number {
    return this.options.channel.bufferedAmount;
  }

  onHello(hello: LanHello): void {
    const rose = hello.cursors[0].cursor > this.remoteCursor;
    this.remoteCursor = hello.cursors[0].cursor;
    this.source.setAdvert(this.ns, this.remoteCursor);
    if (rose) this.options.onCursor?.(this.remoteCursor);
  }

  sendCursor(cursor: Cursor): void {
    if (!this.link.isOpen) return;
    this.options.channel.send(encodeHello({ peerId: this.options.localPeerId, cursors: [{ ns: this.ns, cursor }] }));
  }

  close(): void {
    this.link.close();
  }
}
