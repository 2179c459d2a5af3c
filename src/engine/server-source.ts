import { MAX_BLOCK_BATCH, type BlockHash, type NamespaceId } from '../protocol/index.ts';
import type { ServerApi } from './server-api.ts';
import type { BlockSource, WantedBlock } from './types.ts';

/** The server as one more block source: it can serve anything its journal references. */
export class ServerBlockSource implements BlockSource {
  readonly id = 'server';
  readonly kind = 'server' as const;
  readonly maxBatch = MAX_BLOCK_BATCH;
  constructor(
    private readonly api: ServerApi,
    readonly maxInFlight = 4,
  ) {}

  canServe(): boolean {
    return true;
  }

  fetchBlock(want: WantedBlock, signal: AbortSignal): Promise<Uint8Array> {
    return this.api.getBlock(want.ns, want.hash, signal);
  }

  /** One POST /ns/:ns/blocks per namespace among the wants (the engine fetches for one). */
  async fetchBlocks(wants: readonly WantedBlock[], signal: AbortSignal): Promise<Map<BlockHash, Uint8Array>> {
    const byNamespace = new Map<NamespaceId, WantedBlock[]>();
    for (const want of wants) {
      const some = byNamespace.get(want.ns);
      if (some) some.push(want);
      else byNamespace.set(want.ns, [want]);
    }
    const parts = await Promise.all([...byNamespace].map(([ns, some]) => this.api.getBlocks(ns, some.map((want) => want.hash), signal)));
    return new Map(parts.flatMap((part) => [...part]));
  }
}
