import type { NamespaceId, PeerId } from '../../protocol/index.ts';

/**
 * Which namespaces each connected relay peer holds, so a signal can be checked (the two
 * peers must share one) and routed even when its target is connected to another relay
 * instance. `InMemoryPeerDirectory` serves one process; a Redis one serves several.
 */
export interface PeerDirectory {
  /** Records a peer connected to this instance. */
  register(peerId: PeerId, namespaces: readonly NamespaceId[]): Promise<void>;
  /** Forgets a peer that disconnected from this instance. */
  unregister(peerId: PeerId): Promise<void>;
  /** The namespaces of a connected peer (on any instance), or null when it is not connected. */
  namespacesOf(peerId: PeerId): Promise<readonly NamespaceId[] | null>;
  close(): Promise<void>;
}

export class InMemoryPeerDirectory implements PeerDirectory {
  private readonly peers = new Map<PeerId, readonly NamespaceId[]>();

  async register(peerId: PeerId, namespaces: readonly NamespaceId[]): Promise<void> {
    this.peers.set(peerId, [...namespaces]);
  }

  async unregister(peerId: PeerId): Promise<void> {
    this.peers.delete(peerId);
  }

  async namespacesOf(peerId: PeerId): Promise<readonly NamespaceId[] | null> {
    return this.peers.get(peerId) ?? null;
  }

  async close(): Promise<void> {}
}
