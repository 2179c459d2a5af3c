import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ReusedWriteBuffers } from '../../src/lan/folder/reused-write-buffers.ts';

describe('ReusedWriteBuffers', () => {
  let dir: string | null = null;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = null;
  });

  it('writes every block at its position, from shared memory too, with more writes at once than it has buffers', async () => {
    dir = await mkdtemp(join(tmpdir(), 'reused-write-buffers-'));
    const handle = await open(join(dir, 'file'), 'w+');
    const blockSize = 1024 * 1024 + 7;
    const blocks = Array.from({ length: 5 }, (_, i) => {
      const bytes = i % 2 === 0 ? new Uint8Array(new SharedArrayBuffer(blockSize)) : new Uint8Array(blockSize);
      bytes.set(randomBytes(blockSize));
      return bytes;
    });
    const writes = new ReusedWriteBuffers(2);
    try {
      // All at once and out of order: three of them find no free buffer and are written as they are.
      await Promise.all([4, 0, 3, 1, 2].map((i) => writes.write(handle, blocks[i], i * blockSize)));
      // Reused: the same buffers carry other bytes now.
      blocks[1] = new Uint8Array(randomBytes(blockSize));
      await writes.write(handle, blocks[1], blockSize);
    } finally {
      await handle.close();
    }
    const written = await readFile(join(dir, 'file'));
    expect(written.length).toBe(5 * blockSize);
    blocks.forEach((block, i) => expect(written.subarray(i * blockSize, (i + 1) * blockSize).equals(Buffer.from(block))).toBe(true));
  });
});
