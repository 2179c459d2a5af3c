import type { BlockStore, StoredBlock } from '../storage/block-store.ts';
import { digestKey, type GcMetadata } from '../storage/gc-metadata.ts';
import { RetainedBlockSet } from './retained-set.ts';

export interface RetentionSettings {
  /** Superseded versions (and deleted files) keep their blocks this long; 0 keeps none. */
  historyMs: number;
  /** Blocks stored more recently than this are never removed: uploads on their way to a commit. */
  graceMs: number;
  /** Retained blocks a pass keeps in memory before it moves the set to a temp file (default 1,000,000). */
  retainedInMemory?: number;
}

/** A pass that ran: to its end, or `stopped` by shutdown between batches. */
export interface GcPassReport {
  status: 'done' | 'stopped';
  blocksCollected: number;
  bytesCollected: number;
  /** Blocks looked at and kept (retained, or within the grace period). */
  blocksKept: number;
  /** The retained set outgrew memory and was answered from a temp file. */
  retainedOnDisk: boolean;
  /** This process's clock, ms: when the pass held the pass lock. */
  startedAt: number;
  endedAt: number;
}

/** `busy`: another pass (on any instance) held the pass lock, so this one did nothing. */
export type GcPassResult = { status: 'busy' } | GcPassReport;

/** Candidates removed per exclusive hold: commits wait while a batch is re-checked and removed. */
const BATCH = 256;

/**
 * One block GC pass. Under the pass lock (one pass at a time across instances):
 *
 * 1. read the namespaces' heads, then the blocks of every retained entry (live versions, and
 *    versions superseded within `historyMs`) into a set (on disk once it outgrows memory);
 * 2. list the store; a block stored before `startedAt - graceMs` and not in the set is a
 *    candidate;
 * 3. per batch of candidates, with commits held off: add the blocks of entries committed
 *    since the heads were read, and remove the candidates still unreferenced.
 *
 * Step 3 is what makes a commit safe whatever its timing (see GcMetadata). A block a journal
 * entry brought back during the pass is kept, whenever it came.
 */
export async function collectBlocks(
  metadata: GcMetadata,
  blocks: BlockStore,
  settings: RetentionSettings,
  signal?: AbortSignal,
): Promise<GcPassResult> {
  const session = await metadata.beginGcPass();
  if (!session) return { status: 'busy' };
  const startedAt = Date.now();
  const storedBefore = startedAt - settings.graceMs;
  let blocksCollected = 0;
  let bytesCollected = 0;
  let blocksKept = 0;
  const retained = new RetainedBlockSet(settings.retainedInMemory);
  try {
    const heads = await session.heads();
    const addAll = (digests: Buffer) => retained.addDigests(digests);
    await session.retainedBlocks(settings.historyMs, addAll);

    let batch: StoredBlock[] = [];
    const flush = async () => {
      const candidates = batch;
      batch = [];
      await session.withCommitsHeld(heads, async (newer) => {
        addAll(newer);
        const doomed = candidates.filter((block) => !retained.has(digestKey(block.hash)));
        blocksKept += candidates.length - doomed.length;
        if (doomed.length === 0) return;
        await blocks.remove(doomed.map((block) => block.hash));
        blocksCollected += doomed.length;
        for (const block of doomed) bytesCollected += block.size;
      });
    };
    for await (const block of blocks.list()) {
      if (signal?.aborted) break;
      if (block.storedAt >= storedBefore || retained.has(digestKey(block.hash))) {
        blocksKept += 1;
        continue;
      }
      batch.push(block);
      if (batch.length >= BATCH) await flush();
    }
    if (batch.length > 0 && !signal?.aborted) await flush();
    // Taken before the pass lock goes, so passes' [startedAt, endedAt] never overlap.
    const endedAt = Date.now();
    return { status: signal?.aborted ? 'stopped' : 'done', blocksCollected, bytesCollected, blocksKept, retainedOnDisk: retained.spilled, startedAt, endedAt };
  } finally {
    retained.close();
    await session.end();
  }
}
