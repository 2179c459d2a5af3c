import type { NamespaceId } from '../../protocol/index.ts';

/** What a LAN peer claims for one namespace, as a listener accepted it. */
export interface LanPeerAdvert {
  /** The sender's peer id, 32 lower-case hex digits. */
  peerId: string;
  /** Where the datagram came from (the kernel's word, not the sender's). */
  address: string;
  tcpPort: number;
  ns: NamespaceId;
  /** The sender holds every block of every live file of `ns` up to this journal entry. */
  cursor: number;
  /** When it was heard (ms since the Unix epoch, the listener's clock). */
  at: number;
}

interface Heard {
  sequence: number;
  advert: LanPeerAdvert;
}

/**
 * The adverts heard, one per peer id and namespace: refuses a sequence that is not newer
 * than the last one accepted (a replay, or a reordered older datagram) and forgets a peer
 * unheard for `ttlMs`. Forgetting is safe only because the listener refuses datagrams older
 * than the epoch window, which is shorter than the ttl: a forgotten peer's old datagrams
 * are stale by then.
 */
export class LanPeerTable {
  private readonly heard = new Map<string, Heard>();

  constructor(
    private readonly ttlMs: number,
    /** Bounds memory: only a member could fill it (entries need a valid tag), but a member may misbehave. */
    private readonly maxEntries = 4096,
  ) {}

  /** Records the advert if its sequence is newer and there is room; says why not otherwise. */
  accept(advert: LanPeerAdvert, sequence: number): 'accepted' | 'replay' | 'full' {
    const key = `${advert.peerId}/${advert.ns}`;
    const last = this.heard.get(key);
    if (last !== undefined && sequence <= last.sequence) return 'replay';
    if (last === undefined && this.heard.size >= this.maxEntries) return 'full';
    this.heard.set(key, { sequence, advert });
    return 'accepted';
  }

  /** Removes and returns the adverts last heard before `now - ttlMs`. */
  expire(now: number): LanPeerAdvert[] {
    const gone: LanPeerAdvert[] = [];
    for (const [key, { advert }] of this.heard) {
      if (advert.at <= now - this.ttlMs) {
        this.heard.delete(key);
        gone.push(advert);
      }
    }
    return gone;
  }

  /** The adverts held now, newest cursor first within a namespace. */
  current(): LanPeerAdvert[] {
    return [...this.heard.values()].map((h) => h.advert).sort((a, b) => a.ns.localeCompare(b.ns) || b.cursor - a.cursor);
  }
}
