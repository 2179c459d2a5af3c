import * as Comlink from 'comlink';
import { BridgedBlockSource, type BridgePieceSink } from '../src/engine/bridged-source.ts';
import type { PieceTaps } from '../src/engine/piece-taps.ts';
import type { BlockHash, NamespaceId } from '../src/protocol/index.ts';
import type { PeerAdvert, PeerTransport } from './sync-api.ts';

/**
 * The workspace's LAN peers as the relay's bridge presents them: one BridgedBlockSource per
 * advert marked `lan`, kept across advert updates so each keeps its measured throughput.
 */
export class BridgedPeers {
  private readonly sources = new Map<string, BridgedBlockSource>();
  private transport: PeerTransport | null = null;

  constructor(
    private readonly ns: NamespaceId,
    private readonly taps: PieceTaps | null = null,
  ) {}

  attachTransport(transport: PeerTransport | null): void {
    this.transport = transport;
  }

  /** The relay's current adverts (all of them: those not marked `lan` are ignored here). */
  update(adverts: Iterable<PeerAdvert>): void {
    const seen = new Set<string>();
    for (const advert of adverts) {
      if (!advert.lan) continue;
      seen.add(advert.peerId);
      const source = this.sources.get(advert.peerId);
      if (source) source.setCursor(advert.cursor);
      else this.sources.set(advert.peerId, new BridgedBlockSource(advert.peerId, this.ns, advert.cursor, (hash, sink) => this.fetch(advert.peerId, hash, sink), { taps: this.taps }));
    }
    for (const peerId of [...this.sources.keys()]) if (!seen.has(peerId)) this.sources.delete(peerId);
  }

  /** Usable only while the page's relay socket is there to carry the fetches. */
  list(): BridgedBlockSource[] {
    return this.transport ? [...this.sources.values()] : [];
  }

  has(peerId: string): boolean {
    return this.sources.has(peerId);
  }

  /** The page streams the pieces into `sink` (transferred, one call per bridge event: a piece or a batch of them) and awaits each call before acknowledging it to the bridge. */
  private fetch(peerId: string, hash: BlockHash, sink: BridgePieceSink): Promise<number> {
    if (!this.transport) return Promise.reject(new Error('the page is not connected to the relay'));
    return this.transport.bridgeFetch(peerId, hash, Comlink.proxy(sink));
  }
}
