import type { AdvertOut, NamespaceId, PeerId } from '../../protocol/index.ts';

/**
 * The current peer download advertisements, per namespace: at most one per peer and
 * namespace, dropped when unheard for too long. Asynchronous so that the scale-out back end
 * (Redis, shared by several relay processes) can implement it; `InMemoryAdvertTable` serves
 * a single process.
 */
export interface AdvertTable {
  /**
   * Stores the advert as its peer's current one for its namespace; resolves to the one it
   * replaced, or null. `leaseMs` is how long the relay keeps it unheard before expire() drops
   * it: a shared store lets its copy lapse on its own some time after that, in case no relay
   * is left to sweep.
   */
  put(advert: AdvertOut, leaseMs: number): Promise<AdvertOut | null>;
  /** The adverts of `ns`, most recently heard first, at most `limit`. */
  list(ns: NamespaceId, limit: number): Promise<AdvertOut[]>;
  /** Removes every advert of the peer; resolves to the removed ones. */
  removePeer(peerId: PeerId): Promise<AdvertOut[]>;
  /** Removes the adverts last heard (`at`) before `cutoff` (ms since the epoch); resolves to them. */
  expire(cutoff: number): Promise<AdvertOut[]>;
}

export class InMemoryAdvertTable implements AdvertTable {
  private readonly byNamespace = new Map<NamespaceId, Map<PeerId, AdvertOut>>();

  // The lease is kept by the relay's sweep; a process's memory cannot outlive it anyway.
  async put(advert: AdvertOut, _leaseMs: number): Promise<AdvertOut | null> {
    let adverts = this.byNamespace.get(advert.ns);
    if (!adverts) this.byNamespace.set(advert.ns, (adverts = new Map()));
    const previous = adverts.get(advert.peerId) ?? null;
    adverts.set(advert.peerId, { ...advert });
    return previous;
  }

  async list(ns: NamespaceId, limit: number): Promise<AdvertOut[]> {
    const adverts = [...(this.byNamespace.get(ns)?.values() ?? [])];
    return adverts
      .sort((a, b) => b.at - a.at)
      .slice(0, limit)
      .map((advert) => ({ ...advert }));
  }

  async removePeer(peerId: PeerId): Promise<AdvertOut[]> {
    const removed: AdvertOut[] = [];
    for (const [ns, adverts] of this.byNamespace) {
      const advert = adverts.get(peerId);
      if (!advert) continue;
      adverts.delete(peerId);
      removed.push(advert);
      if (adverts.size === 0) this.byNamespace.delete(ns);
    }
    return removed;
  }

  async expire(cutoff: number): Promise<AdvertOut[]> {
    const removed: AdvertOut[] = [];
    for (const [ns, adverts] of this.byNamespace) {
      for (const [peerId, advert] of adverts) {
        if (advert.at >= cutoff) continue;
        adverts.delete(peerId);
        removed.push(advert);
      }
      if (adverts.size === 0) this.byNamespace.delete(ns);
    }
    return removed;
  }
}
