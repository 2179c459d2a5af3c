import { MAX_BLOCK_BATCH, type BlockHash, type NamespaceId } from '../protocol/index.ts';
import type { BlockBufferPool } from './block-buffers.ts';
import { ApiError, type ServerApi } from './server-api.ts';
import type { BlockSource, WantedBlock } from './types.ts';

/** The server as one more block source: it can serve anything its journal references. */
export class ServerBlockSource implements BlockSource {
  readonly id = 'server';
  readonly kind = 'server' as const;
  /** Set once the server answered that it has no batch route (a server older than it). */
  private batchUnsupported = false;
  constructor(
    private readonly api: ServerApi,
    readonly maxInFlight = 4,
    /** Buffers large blocks are read into, handed back through `release` (the browser's worker passes one). */
    private readonly buffers: BlockBufferPool | null = null,
  ) {}

  /** Blocks per batch request; 1 (no batches) against a server without the batch route. */
  get maxBatch(): number {
    return this.batchUnsupported ? 1 : MAX_BLOCK_BATCH;
  }

  canServe(): boolean {
    return true;
  }

  fetchBlock(want: WantedBlock, signal: AbortSignal): Promise<Uint8Array> {
    return this.api.getBlock(want.ns, want.hash, signal, this.buffers ?? undefined);
  }

  release(bytes: Uint8Array): void {
    this.buffers?.give(bytes);
  }

  /**
   * One POST /ns/:ns/blocks per namespace among the wants (the engine fetches for one). A
   * server from before batch downloads answers 404 or 405: then these blocks, and every later
   * one, are fetched one by one.
   */
  async fetchBlocks(wants: readonly WantedBlock[], signal: AbortSignal): Promise<Map<BlockHash, Uint8Array>> {
    if (!this.batchUnsupported) {
      try {
        return await this.fetchBatches(wants, signal);
      } catch (error) {
        if (!(error instanceof ApiError && (error.status === 404 || error.status === 405))) throw error;
        this.batchUnsupported = true;
      }
    }
    const found = new Map<BlockHash, Uint8Array>();
    for (const want of wants) {
      try {
        found.set(want.hash, await this.api.getBlock(want.ns, want.hash, signal));
      } catch (error) {
        // A block the server refuses is left out of the answer, as a batch would leave it.
        if (!(error instanceof ApiError && error.status < 500)) throw error;
      }
    }
    return found;
  }

  private async fetchBatches(wants: readonly WantedBlock[], signal: AbortSignal): Promise<Map<BlockHash, Uint8Array>> {
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
