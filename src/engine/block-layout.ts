import { MAX_BLOCK_SIZE } from '../protocol/index.ts';

/**
 * Expected length of block `index` of a file cut into fixed 4 MiB blocks (how every
 * nearsync client cuts). Used for progress only: the real length is known once the bytes
 * arrive, and the hash, not this figure, decides whether they are right.
 */
export function expectedBlockSize(fileSize: number, blockCount: number, index: number): number {
  if (index < blockCount - 1) return Math.min(MAX_BLOCK_SIZE, fileSize);
  const rest = fileSize - (blockCount - 1) * MAX_BLOCK_SIZE;
  return Math.max(1, Math.min(MAX_BLOCK_SIZE, rest));
}
