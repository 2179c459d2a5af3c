import type { BlockStore } from '../storage/block-store.ts';

/**
 * The last GC generation this instance saw (see BeforeCommitWrite). A different one means
 * some instance removed blocks since: the block store's cached sizes may name removed blocks,
 * so they are dropped before the commit checks its blocks.
 */
export class GcGenerationWatch {
  private seen: number | null = null;

  constructor(private readonly blocks: Pick<BlockStore, 'forgetSizes'>) {}

  observe(generation: number): void {
    if (generation === this.seen) return;
    this.blocks.forgetSizes();
    this.seen = generation;
  }
}
