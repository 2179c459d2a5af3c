import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_BLOCK_SIZE } from '../../src/protocol/index.ts';

/**
 * Hashes of the blocks a folder-mode daemon holds in its temp files in `dir` (a received block
 * is written there, at its 4 MiB offset, and nowhere else): each 4 MiB region of each
 * `.nearsync-tmp-*` file, the last one up to the file's end. A region not written yet hashes
 * to nothing anyone asked for.
 */
export async function tempFileBlocks(dir: string): Promise<Set<string>> {
  const found = new Set<string>();
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith('.nearsync-tmp-')) continue;
    const bytes = await readFile(join(dir, name)).catch(() => Buffer.alloc(0));
    for (let at = 0; at < bytes.length; at += MAX_BLOCK_SIZE) {
      found.add(createHash('sha256').update(bytes.subarray(at, Math.min(bytes.length, at + MAX_BLOCK_SIZE))).digest('hex'));
    }
  }
  return found;
}
