import type { BlockHash } from '../../protocol/index.ts';
import type { DiskBlockStore } from './disk-block-store.ts';

export interface BlockGcOptions {
  /** Whether something still needs the block: a live file, a commit not read back yet. */
  inUse(hash: BlockHash): boolean;
  /**
   * Blocks stored more recently than this are kept whatever they are for: a local file cut
   * into blocks waits for its commit, a page being folded in may need them.
   */
  graceMs: number;
  now?: () => number;
}

export interface BlockGcResult {
  removed: BlockHash[];
  bytesFreed: number;
  kept: number;
}

/**
 * Removes the blocks nothing needs any more (no live file uses them, and they were stored
 * before the grace period). A block's use is checked again right before it goes, so one
 * that a journal entry brought back meanwhile stays; the caller tells the engine which went,
 * so it fetches any of them a file has needed since.
 */
export async function collectUnusedBlocks(store: DiskBlockStore, options: BlockGcOptions): Promise<BlockGcResult> {
  const now = options.now ?? Date.now;
  const result: BlockGcResult = { removed: [], bytesFreed: 0, kept: 0 };
  for await (const block of store.entries()) {
    if (options.inUse(block.hash) || now() - block.storedAt < options.graceMs) {
      result.kept += 1;
      continue;
    }
    if (await store.remove(block.hash)) {
      result.removed.push(block.hash);
      result.bytesFreed += block.size;
    }
  }
  return result;
}
