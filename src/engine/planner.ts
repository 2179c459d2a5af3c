import type { BlockHash, NamespaceId } from '../protocol/index.ts';
import { expectedBlockSize } from './block-layout.ts';
import type { FileRecord, WantedBlock } from './types.ts';

/**
 * The blocks this device lacks for its live files, each once, in journal order (older
 * entries first, then block order within a file, so files complete one after another).
 * A block shared by several files is wanted at the oldest entry that needs it: any peer
 * synced that far can serve it.
 */
export function planMissingBlocks(
  ns: NamespaceId,
  files: Iterable<FileRecord>,
  have: ReadonlySet<BlockHash>,
): WantedBlock[] {
  const ordered = [...files].sort((a, b) => a.sjid - b.sjid);
  const wanted = new Map<BlockHash, WantedBlock>();
  for (const file of ordered) {
    file.blocks.forEach((hash, index) => {
      if (have.has(hash) || wanted.has(hash)) return;
      wanted.set(hash, { ns, hash, sjid: file.sjid, sizeHint: expectedBlockSize(file.size, file.blocks.length, index) });
    });
  }
  return [...wanted.values()];
}

/** Bytes of `file` already on this device, by the expected block layout. */
export function bytesPresent(file: FileRecord, have: ReadonlySet<BlockHash>): number {
  let done = 0;
  file.blocks.forEach((hash, index) => {
    if (have.has(hash)) done += expectedBlockSize(file.size, file.blocks.length, index);
  });
  return Math.min(done, file.size);
}
