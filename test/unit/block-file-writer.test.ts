import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockBufferPool } from '../../src/engine/block-buffers.ts';
import { alignedForDirectIo } from '../../src/engine/page-aligned.ts';
import { BlockFileWriter } from '../../src/lan/folder/block-file-writer.ts';
import { MAX_BLOCK_SIZE } from '../../src/protocol/index.ts';

/** Bytes of `path` in the page cache, by util-linux's fincore. */
function cachedBytes(path: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' }).trim());
}

/** Five blocks laid out as a file: four whole ones and a short last one, some in shared memory. */
function fileBlocks(): Uint8Array[] {
  return Array.from({ length: 5 }, (_, i) => {
    const size = i === 4 ? 123_457 : MAX_BLOCK_SIZE;
    const bytes = i % 2 === 0 ? new Uint8Array(new SharedArrayBuffer(size)) : new Uint8Array(size);
    bytes.set(randomBytes(size));
    return bytes;
  });
}

describe('BlockFileWriter', () => {
  let dir: string | null = null;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = null;
  });

  for (const direct of [true, false]) {
    it(`writes every block at its offset with more writes at once than buffers (${direct ? 'past the page cache' : 'through the page cache'})`, async () => {
      dir = await mkdtemp(join(tmpdir(), 'block-file-writer-'));
      const path = join(dir, 'file');
      const handle = await open(path, 'w+');
      const writer = new BlockFileWriter({ buffers: 2, direct });
      const target = { handle, direct: await writer.openDirect(handle) };
      expect(target.direct !== null).toBe(direct);
      const blocks = fileBlocks();
      try {
        // All at once and out of order: three wait for a buffer.
        await Promise.all([4, 0, 3, 1, 2].map((i) => writer.write(target, blocks[i], i * MAX_BLOCK_SIZE)));
        // The buffers are reused: a block written again with other bytes lands whole.
        blocks[1] = new Uint8Array(randomBytes(MAX_BLOCK_SIZE));
        await writer.write(target, blocks[1], MAX_BLOCK_SIZE);
        const size = 4 * MAX_BLOCK_SIZE + blocks[4].length;
        // A direct write of the short last block is padded to 4 KiB; the owner truncates (the materialiser does).
        expect((await handle.stat()).size).toBe(direct ? 4 * MAX_BLOCK_SIZE + Math.ceil(blocks[4].length / 4096) * 4096 : size);
        await handle.truncate(size);
        if (direct) expect(cachedBytes(path)).toBe(0);
        else expect(cachedBytes(path)).toBeGreaterThanOrEqual(4 * MAX_BLOCK_SIZE);
      } finally {
        await target.direct?.close();
        await handle.close();
      }
      const written = await readFile(path);
      expect(written.length).toBe(4 * MAX_BLOCK_SIZE + blocks[4].length);
      blocks.forEach((block, i) => expect(written.subarray(i * MAX_BLOCK_SIZE, i * MAX_BLOCK_SIZE + block.length).equals(Buffer.from(block))).toBe(true));
    });
  }

  it('writes an unaligned position through the page cache', async () => {
    dir = await mkdtemp(join(tmpdir(), 'block-file-writer-'));
    const path = join(dir, 'file');
    const handle = await open(path, 'w+');
    const writer = new BlockFileWriter();
    const target = { handle, direct: await writer.openDirect(handle) };
    const bytes = new Uint8Array(randomBytes(10_000));
    try {
      await writer.write(target, bytes, 1000);
    } finally {
      await target.direct?.close();
      await handle.close();
    }
    const written = await readFile(path);
    expect(written.length).toBe(11_000);
    expect(written.subarray(1000).equals(Buffer.from(bytes))).toBe(true);
  });

  it('writes blocks in page-aligned pooled memory from where they are, a short one padded with zeros over what the buffer held before', async () => {
    dir = await mkdtemp(join(tmpdir(), 'block-file-writer-'));
    const path = join(dir, 'file');
    const handle = await open(path, 'w+');
    const pool = new BlockBufferPool(MAX_BLOCK_SIZE, 4, 10_000, true);
    const writer = new BlockFileWriter({ buffers: 1 });
    const target = { handle, direct: await writer.openDirect(handle) };
    expect(target.direct).not.toBeNull();
    const blocks = fileBlocks().map((block) => {
      const pooled = new Uint8Array(pool.take(), 0, block.length);
      // What an earlier block left in the buffer past this one's bytes.
      new Uint8Array(pooled.buffer).fill(0xee);
      pooled.set(block);
      return pooled;
    });
    expect(blocks.every((block) => alignedForDirectIo(block, MAX_BLOCK_SIZE))).toBe(true);
    try {
      await Promise.all(blocks.map((block, i) => writer.write(target, block, i * MAX_BLOCK_SIZE)));
      expect(cachedBytes(path)).toBe(0);
    } finally {
      await target.direct?.close();
      await handle.close();
    }
    const written = await readFile(path);
    const end = 4 * MAX_BLOCK_SIZE + blocks[4].length;
    expect(written.length).toBe(4 * MAX_BLOCK_SIZE + Math.ceil(blocks[4].length / 4096) * 4096);
    blocks.forEach((block, i) => expect(written.subarray(i * MAX_BLOCK_SIZE, i * MAX_BLOCK_SIZE + block.length).equals(Buffer.from(block))).toBe(true));
    expect(written.subarray(end).every((byte) => byte === 0)).toBe(true);
  });
});
