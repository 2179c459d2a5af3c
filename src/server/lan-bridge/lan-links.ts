import type { LiveBlockCheck } from '../../engine/block-server.ts';
import type { LocalBlockStore } from '../../engine/types.ts';
import type { Cursor, NamespaceId } from '../../protocol/index.ts';
import { connectLanPeer, LanConnectError } from '../../lan/tcp/connect.ts';
import { isProtocolFailure, type LanPeer, type SessionFailure } from '../../lan/tcp/lan-session.ts';
import { plainIp } from '../../lan/lan-ban.ts';

/** Where to dial a LAN peer for one namespace (what its advert says). */
export interface LinkTarget {
  /** Its LAN peer id, hex. */
  peerId: string;
  ns: NamespaceId;
  address: string;
  tcpPort: number;
}

/** No link to the peer now: dialling failed, or the last link closed and the backoff has not passed. */
export class LinkUnavailableError extends Error {
  override readonly name = 'LinkUnavailableError';
}

export interface LanLinksOptions {
  /** The bridge's LAN peer id (16 bytes). */
  peerId: Uint8Array;
  lanKeyOf(ns: NamespaceId): Uint8Array | undefined;
  cursorOf(ns: NamespaceId): Cursor;
  /** Serves the peer's requests on links we dial (the reverse direction). */
  serve: { store: LocalBlockStore; isLiveBlock: LiveBlockCheck };
  /** A link with the peer failed for a protocol error (either side dialled): ban it. */
  /** `address`: the IP of the connection that failed (a ban names it with the claimed id). */
  onProtocolFailure(peerId: string, address: string, failure: SessionFailure): void;
  /** First wait before dialling again after a failure or a close; doubles up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  handshakeTimeoutMs?: number;
}

interface Link {
  target: LinkTarget;
  /** Open sessions with the peer for the namespace, dialled or accepted. */
  readonly open: Set<LanPeer>;
  dialling: Promise<LanPeer> | null;
  abort: AbortController | null;
  failures: number;
  notBefore: number;
}

const key = (peerId: string, ns: NamespaceId) => `${peerId}/${ns}`;

/**
 * The bridge's TCP links to LAN peers: one per (LAN peer, namespace), dialled when a browser
 * first fetches through it and reused by later fetches; a link the peer dialled to us counts
 * too. A closed link is dialled again on the next fetch once a backoff has passed (doubling
 * per failure); a link that failed for a protocol error is reported for a ban.
 */
export class LanLinks {
  private readonly links = new Map<string, Link>();
  private closed = false;

  constructor(private readonly options: LanLinksOptions) {}

  /** An open link to the target, dialling it if needed; rejects with LinkUnavailableError. */
  async linkTo(target: LinkTarget): Promise<LanPeer> {
    if (this.closed) throw new LinkUnavailableError('the bridge is stopping');
    const link = this.entry(target);
    const open = this.openOf(link);
    if (open) return open;
    if (link.dialling) return link.dialling;
    const wait = link.notBefore - Date.now();
    if (wait > 0) throw new LinkUnavailableError(`the link to LAN peer ${target.peerId.slice(0, 8)} closed; dialling again in ${Math.ceil(wait / 1000)} s`);
    link.dialling = this.dial(link).finally(() => {
      link.dialling = null;
      link.abort = null;
    });
    return link.dialling;
  }

  /** A session the peer dialled to our block service: fetches may use it too. */
  adopt(peer: LanPeer): void {
    if (this.closed) return peer.close();
    const existing = this.links.get(key(peer.remotePeerId, peer.ns));
    const link = existing ?? this.entry({ peerId: peer.remotePeerId, ns: peer.ns, address: peer.remoteAddress, tcpPort: 0 });
    link.open.add(peer);
    link.failures = 0;
  }

  /** A session closed (dialled or accepted), with the failure that closed it, or null. */
  closedSession(peer: LanPeer, failure: SessionFailure | null): void {
    const link = this.links.get(key(peer.remotePeerId, peer.ns));
    if (link?.open.delete(peer) && link.open.size === 0) this.backOff(link);
    if (isProtocolFailure(failure)) this.options.onProtocolFailure(peer.remotePeerId, peer.remoteAddress, failure!);
  }

  /** Tells the peers of `ns` our new cursor (a hello on each open link). */
  sendCursor(ns: NamespaceId, cursor: Cursor): void {
    for (const link of this.links.values()) {
      if (link.target.ns !== ns) continue;
      for (const peer of link.open) {
        try {
          peer.sendCursor(cursor);
        } catch {
          // Over its send budget: the channel is closing it, and closedSession follows.
        }
      }
    }
  }

  /** Closes the links to a LAN peer id at one address (a banned one). */
  closePeerAt(peerId: string, address: string): void {
    for (const [id, link] of this.links) if (link.target.peerId === peerId && plainIp(link.target.address) === plainIp(address)) this.drop(id, link);
  }

  closeNamespace(ns: NamespaceId): void {
    for (const [id, link] of this.links) if (link.target.ns === ns) this.drop(id, link);
  }

  closeLink(peerId: string, ns: NamespaceId): void {
    const link = this.links.get(key(peerId, ns));
    if (link) this.drop(key(peerId, ns), link);
  }

  closeAll(): void {
    this.closed = true;
    for (const [id, link] of this.links) this.drop(id, link);
  }

  /** Open links now. */
  get openCount(): number {
    let count = 0;
    for (const link of this.links.values()) count += link.open.size;
    return count;
  }

  private entry(target: LinkTarget): Link {
    const id = key(target.peerId, target.ns);
    let link = this.links.get(id);
    if (!link) {
      link = { target, open: new Set(), dialling: null, abort: null, failures: 0, notBefore: 0 };
      this.links.set(id, link);
    } else if (target.tcpPort !== 0) {
      // The peer may have moved (a restart on another port): dial where it advertises now.
      link.target = target;
    }
    return link;
  }

  private openOf(link: Link): LanPeer | null {
    for (const peer of link.open) {
      if (peer.link.isOpen) return peer;
      link.open.delete(peer);
    }
    return null;
  }

  private async dial(link: Link): Promise<LanPeer> {
    const { target } = link;
    const lanKey = this.options.lanKeyOf(target.ns);
    if (!lanKey) throw new LinkUnavailableError(`namespace ${target.ns} is not bridged`);
    const abort = new AbortController();
    link.abort = abort;
    let dialled: LanPeer | null = null;
    let peer: LanPeer;
    try {
      peer = await connectLanPeer({
        host: target.address,
        port: target.tcpPort,
        ns: target.ns,
        lanKey,
        peerId: this.options.peerId,
        cursor: this.options.cursorOf(target.ns),
        serve: this.options.serve,
        handshakeTimeoutMs: this.options.handshakeTimeoutMs,
        signal: abort.signal,
        onClose: (failure) => {
          if (dialled) this.closedSession(dialled, failure);
          else if (isProtocolFailure(failure)) this.options.onProtocolFailure(target.peerId, target.address, failure!);
        },
      });
    } catch (error) {
      this.backOff(link);
      if (error instanceof LanConnectError && isProtocolFailure(error.failure)) this.options.onProtocolFailure(target.peerId, target.address, error.failure!);
      throw new LinkUnavailableError(`could not connect to LAN peer ${target.peerId.slice(0, 8)}: ${(error as Error).message}`);
    }
    if (peer.remotePeerId !== target.peerId || this.closed || this.links.get(key(target.peerId, target.ns)) !== link || !peer.link.isOpen) {
      peer.close();
      this.backOff(link);
      throw new LinkUnavailableError(`the link to LAN peer ${target.peerId.slice(0, 8)} did not stay up`);
    }
    dialled = peer;
    link.open.add(peer);
    link.failures = 0;
    link.notBefore = 0;
    return peer;
  }

  private backOff(link: Link): void {
    link.failures += 1;
    const first = this.options.backoffMs ?? 500;
    const delay = Math.min(this.options.maxBackoffMs ?? 30_000, first * 2 ** Math.min(link.failures - 1, 16));
    link.notBefore = Date.now() + delay;
  }

  private drop(id: string, link: Link): void {
    this.links.delete(id);
    link.abort?.abort();
    for (const peer of link.open) peer.close();
    link.open.clear();
  }
}
