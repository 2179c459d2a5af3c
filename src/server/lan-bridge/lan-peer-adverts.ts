import type { AdvertOut, NamespaceId, PeerId, PeerLeft } from '../../protocol/index.ts';
import type { LanPeerAdvert } from '../../lan/discovery/index.ts';
import type { LanRelayIds } from './relay-peer-ids.ts';
import { plainIp } from '../../lan/lan-ban.ts';

/** A LAN peer's current advert for one namespace, with the relay id browsers know it by. */
export interface BridgedLanPeer extends LanPeerAdvert {
  relayId: PeerId;
}

/** The label browsers show for a LAN peer. */
export function lanPeerLabel(lanPeerId: string): string {
  return `LAN peer ${lanPeerId.slice(0, 8)}`;
}

/**
 * The LAN adverts the bridge's listener accepted, as relay adverts: one per LAN peer and
 * namespace, keyed by the peer's relay id. Says what changed, so the bridge tells browsers
 * only about news (a refresh with the same cursor is not news).
 */
export class LanPeerAdverts {
  private readonly byRelayId = new Map<PeerId, Map<NamespaceId, BridgedLanPeer>>();

  constructor(private readonly ids: LanRelayIds) {}

  /** Records an accepted advert; the relay advert to announce when it is new or its cursor moved, else null. */
  heard(advert: LanPeerAdvert): AdvertOut | null {
    const relayId = this.ids.relayIdOf(advert.peerId);
    let adverts = this.byRelayId.get(relayId);
    if (!adverts) this.byRelayId.set(relayId, (adverts = new Map()));
    const before = adverts.get(advert.ns);
    const now: BridgedLanPeer = { ...advert, relayId };
    adverts.set(advert.ns, now);
    return before && before.cursor === advert.cursor ? null : toAdvertOut(now);
  }

  /** Forgets an advert the listener expired; the peer-left to announce, or null if it was not held. */
  expired(advert: LanPeerAdvert): PeerLeft | null {
    const relayId = this.ids.relayIdOf(advert.peerId);
    const adverts = this.byRelayId.get(relayId);
    if (!adverts?.delete(advert.ns)) return null;
    if (adverts.size === 0) this.byRelayId.delete(relayId);
    return { peerId: relayId, ns: advert.ns };
  }

  /** The current advert of relay peer `relayId` for `ns`. */
  find(relayId: PeerId, ns: NamespaceId): BridgedLanPeer | null {
    return this.byRelayId.get(relayId)?.get(ns) ?? null;
  }

  has(relayId: PeerId): boolean {
    return this.byRelayId.has(relayId);
  }

  /** The relay adverts of `ns`, most recently heard first. */
  advertsOf(ns: NamespaceId): AdvertOut[] {
    const found: BridgedLanPeer[] = [];
    for (const adverts of this.byRelayId.values()) {
      const advert = adverts.get(ns);
      if (advert) found.push(advert);
    }
    return found.sort((a, b) => b.at - a.at).map(toAdvertOut);
  }

  /** Forgets the adverts of one LAN peer heard from one address (banned there); the peer-lefts to announce. */
  dropPeerAt(lanPeerId: string, address: string): PeerLeft[] {
    const relayId = this.ids.relayIdOf(lanPeerId);
    const adverts = this.byRelayId.get(relayId);
    if (!adverts) return [];
    const left: PeerLeft[] = [];
    for (const [ns, advert] of adverts) {
      if (plainIp(advert.address) !== plainIp(address)) continue;
      adverts.delete(ns);
      left.push({ peerId: relayId, ns });
    }
    if (adverts.size === 0) this.byRelayId.delete(relayId);
    return left;
  }

  /** Forgets every advert of `ns` (no browser of it is left here to tell). */
  dropNamespace(ns: NamespaceId): BridgedLanPeer[] {
    const dropped: BridgedLanPeer[] = [];
    for (const [relayId, adverts] of this.byRelayId) {
      const advert = adverts.get(ns);
      if (!advert) continue;
      adverts.delete(ns);
      dropped.push(advert);
      if (adverts.size === 0) this.byRelayId.delete(relayId);
    }
    return dropped;
  }

  /** Every advert held, for peer-left when the bridge stops. */
  all(): BridgedLanPeer[] {
    return [...this.byRelayId.values()].flatMap((adverts) => [...adverts.values()]);
  }

  /** LAN peers with at least one current advert. */
  get peerCount(): number {
    return this.byRelayId.size;
  }
}

function toAdvertOut(peer: BridgedLanPeer): AdvertOut {
  return { peerId: peer.relayId, label: lanPeerLabel(peer.peerId), ns: peer.ns, cursor: peer.cursor, at: peer.at, lan: true };
}
