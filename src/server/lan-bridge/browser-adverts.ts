import type { NamespaceId } from '../../protocol/index.ts';

interface Heard {
  cursor: number;
  at: number;
}

/**
 * The adverts of the browsers connected to this instance, per namespace: which browsers to
 * ask for a block a LAN peer wants (highest cursor first) and the cursor the bridge may
 * claim on the LAN for them (the highest). An advert unheard for `ttlMs` no longer counts,
 * as the relay drops it too. Generic over the browser handle.
 */
export class BrowserAdverts<B> {
  private readonly byNamespace = new Map<NamespaceId, Map<B, Heard>>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records a browser's advert; says whether the namespace's highest cursor changed. */
  set(ns: NamespaceId, browser: B, cursor: number): boolean {
    const before = this.highest(ns);
    let heard = this.byNamespace.get(ns);
    if (!heard) this.byNamespace.set(ns, (heard = new Map()));
    heard.set(browser, { cursor, at: this.now() });
    return this.highest(ns) !== before;
  }

  /** Forgets a browser that left; the namespaces whose highest cursor changed. */
  remove(browser: B): NamespaceId[] {
    const changed: NamespaceId[] = [];
    for (const [ns, heard] of this.byNamespace) {
      if (!heard.has(browser)) continue;
      const before = this.highest(ns);
      heard.delete(browser);
      if (heard.size === 0) this.byNamespace.delete(ns);
      if (this.highest(ns) !== before) changed.push(ns);
    }
    return changed;
  }

  /** The highest current cursor a browser advertised for `ns`, or null when none did. */
  highest(ns: NamespaceId): number | null {
    let best: number | null = null;
    for (const { cursor } of this.current(ns)) if (best === null || cursor > best) best = cursor;
    return best;
  }

  /** The browsers with a current advert for `ns`, highest cursor first (earliest heard first on a tie). */
  browsersOf(ns: NamespaceId): B[] {
    return this.current(ns)
      .sort((a, b) => b.cursor - a.cursor)
      .map(({ browser }) => browser);
  }

  private current(ns: NamespaceId): Array<{ browser: B; cursor: number }> {
    const cutoff = this.now() - this.ttlMs;
    const found: Array<{ browser: B; cursor: number }> = [];
    for (const [browser, { cursor, at }] of this.byNamespace.get(ns) ?? []) if (at >= cutoff) found.push({ browser, cursor });
    return found;
  }
}
