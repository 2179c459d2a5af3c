import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { cutBlocks } from '../../engine/chunker.ts';
import type { BlockHash } from '../../protocol/index.ts';
import { sha256Hex } from '../store/node-sha256.ts';

/**
 * Reads a file and cuts it into the engine's 4 MiB blocks, handing each block with its
 * hash to `onBlock` (to keep or upload it). Holds one block in memory at a time.
 *
 * Each block's CRC-32 comes too: the folder's block index checks a block read back for a peer
 * against it instead of hashing it again (folder-block-index.ts); taking it here, while the
 * bytes are at hand, costs about a third of the SHA-256 beside it.
 */
export async function cutFile(
  absolute: string,
  onBlock?: (hash: BlockHash, bytes: Uint8Array) => Promise<void>,
): Promise<{ blocks: BlockHash[]; crcs: number[]; size: number }> {
  const stream = Readable.toWeb(createReadStream(absolute)) as ReadableStream<Uint8Array>;
  const blocks: BlockHash[] = [];
  const crcs: number[] = [];
  let size = 0;
  for await (const block of cutBlocks(stream)) {
    const hash = sha256Hex(block);
    blocks.push(hash);
    crcs.push(crc32(block));
    size += block.length;
    await onBlock?.(hash, block);
  }
  return { blocks, crcs, size };
}

export function sameBlocks(a: readonly BlockHash[], b: readonly BlockHash[]): boolean {
  return a.length === b.length && a.every((hash, i) => hash === b[i]);
}
