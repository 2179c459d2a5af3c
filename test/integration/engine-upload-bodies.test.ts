import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import { BlockBufferPool } from '../../src/engine/block-buffers.ts';
import { blobBlocks } from '../../src/engine/chunker.ts';
import { uploadFile } from '../../src/engine/uploader.ts';
import { MAX_BLOCK_SIZE, parseFilePath, type BlockHash } from '../../src/protocol/index.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';

/**
 * Uploads whose block bodies are slices of the source (`bodyOf`, as the browser sends the
 * picked File's slices) against the real server: the blocks that reach the server are the
 * bytes that were read and hashed, even when the source changed after it was read; blocks
 * the server has are not sent again; the questions about missing blocks are gathered.
 */

let server: RunningServer;
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'nearsync-upload-bodies-'));
  server = await startServer({ host: '127.0.0.1', port: 0, dataDir, staticDir: null, logger: silentLogger });
});
afterAll(async () => {
  await server?.close();
  await rm(dataDir, { recursive: true, force: true });
});

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 17 + (i >> 12)) & 0xff;
  return bytes;
}

describe('uploads with source slices as bodies', () => {
  it('sends slices, falls back to what was read when the source changed, and asks about missing blocks in few requests', async () => {
    const created = await new ServerApi(server.url).createWorkspace('bodies');
    const api = new ServerApi(server.url, created.token);
    const read = pattern(6 * MAX_BLOCK_SIZE + 1234, 1);
    // The "file on disk" changed after it was read: block 2 of it differs from what was hashed.
    const onDisk = read.slice();
    onDisk[2 * MAX_BLOCK_SIZE + 99] ^= 0xff;
    const diskBlob = new Blob([onDisk as Uint8Array<ArrayBuffer>]);
    const slices: number[] = [];
    let questions = 0;
    const counting = {
      ...api,
      missingBlocks: (hashes: BlockHash[]) => {
        questions += 1;
        return api.missingBlocks(hashes);
      },
      putBlock: (hash: BlockHash, body: Uint8Array | Blob) => api.putBlock(hash, body),
      commit: api.commit.bind(api),
      commitBatch: api.commitBatch.bind(api),
    };
    const blocks = new MemoryBlockStore();
    const result = await uploadFile({
      ns: created.namespaceId,
      path: parseFilePath('changed.bin'),
      mtime: 1_700_000_000_000,
      stream: new Blob([read as Uint8Array<ArrayBuffer>]).stream(),
      bodyOf: (offset, length) => {
        slices.push(offset);
        return diskBlob.slice(offset, offset + length);
      },
      api: counting,
      blocks,
      sha256: nodeSha256,
    });
    expect(slices).toEqual([0, 1, 2, 3, 4, 5, 6].map((index) => index * MAX_BLOCK_SIZE));
    expect(result.size).toBe(read.length);
    // Every block on the server is the block that was read (block 2 included).
    for (let index = 0; index < result.blocks.length; index++) {
      const expected = read.subarray(index * MAX_BLOCK_SIZE, (index + 1) * MAX_BLOCK_SIZE);
      expect(result.blocks[index]).toBe(hashOf(expected));
      const stored = await api.getBlock(created.namespaceId, result.blocks[index]);
      expect(Buffer.compare(stored, expected)).toBe(0);
    }
    expect(questions).toBeLessThan(result.blocks.length);

    // The same bytes again: the server has every block, so no slice is read for sending.
    slices.length = 0;
    await uploadFile({
      ns: created.namespaceId,
      path: parseFilePath('again.bin'),
      mtime: 1_700_000_000_000,
      stream: new Blob([read as Uint8Array<ArrayBuffer>]).stream(),
      bodyOf: (offset, length) => {
        slices.push(offset);
        return diskBlob.slice(offset, offset + length);
      },
      api: {
        ...counting,
        putBlock: () => Promise.reject(new Error('a block the server has was sent')),
      },
      blocks: new MemoryBlockStore(),
      sha256: nodeSha256,
    });
    expect(slices).toEqual([]);
  });

  it('reads and hashes a few blocks ahead, and the file is committed with its blocks in order however the hashes finish', async () => {
    const created = await new ServerApi(server.url).createWorkspace('hashes ahead');
    const api = new ServerApi(server.url, created.token);
    const bytes = pattern(9 * MAX_BLOCK_SIZE + 77, 2);
    let hashing = 0;
    let most = 0;
    let calls = 0;
    // Each hash takes less time than the one before: they finish out of order.
    const slowHash = async (block: Uint8Array) => {
      const turn = calls++;
      hashing += 1;
      most = Math.max(most, hashing);
      await new Promise((resolve) => setTimeout(resolve, 60 - turn * 5));
      hashing -= 1;
      return nodeSha256(block);
    };
    const source = new Blob([bytes as Uint8Array<ArrayBuffer>]);
    const result = await uploadFile({
      ns: created.namespaceId,
      path: parseFilePath('ahead.bin'),
      mtime: 1_700_000_000_000,
      stream: blobBlocks(source),
      bodyOf: (offset, length) => source.slice(offset, offset + length),
      api,
      blocks: new MemoryBlockStore(),
      sha256: slowHash,
    });
    // Several at once (the next blocks' reads and hashes overlap), never more than three.
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(3);
    expect(result.size).toBe(bytes.length);
    expect(result.slices.map((slice) => slice.offset)).toEqual(Array.from({ length: 10 }, (_, i) => i * MAX_BLOCK_SIZE));
    for (let index = 0; index < 10; index++) {
      const expected = bytes.subarray(index * MAX_BLOCK_SIZE, (index + 1) * MAX_BLOCK_SIZE);
      expect(result.blocks[index]).toBe(hashOf(expected));
      expect(Buffer.compare(await api.getBlock(created.namespaceId, result.blocks[index]), expected)).toBe(0);
    }
  });

  it('reads blocks into reused buffers, each read into again only once its block is kept and sent (the fallback send included)', async () => {
    const created = await new ServerApi(server.url).createWorkspace('reused reads');
    const api = new ServerApi(server.url, created.token);
    const read = pattern(24 * MAX_BLOCK_SIZE + 5, 3);
    // Block 7 changed on disk after it was read: its PUT falls back to the bytes in the pooled buffer.
    const onDisk = read.slice();
    onDisk[7 * MAX_BLOCK_SIZE + 1] ^= 0xff;
    const source = new Blob([read as Uint8Array<ArrayBuffer>]);
    const diskBlob = new Blob([onDisk as Uint8Array<ArrayBuffer>]);
    const pool = new BlockBufferPool(MAX_BLOCK_SIZE, 16);
    const blocks = new MemoryBlockStore();
    let given = 0;
    const result = await uploadFile({
      ns: created.namespaceId,
      path: parseFilePath('reused.bin'),
      mtime: 1_700_000_000_000,
      stream: blobBlocks(source, MAX_BLOCK_SIZE, 2, pool),
      bodyOf: (offset, length) => diskBlob.slice(offset, offset + length),
      doneWith: (block) => {
        given += 1;
        pool.give(block);
      },
      api,
      blocks,
      sha256: nodeSha256,
    });
    expect(given).toBe(25);
    // No more buffers than blocks in hand at once (8 being kept and sent, 3 hashed ahead, 2 read ahead): the rest were read into again.
    expect(pool.created).toBeLessThanOrEqual(14);
    for (let index = 0; index < 25; index++) {
      const expected = read.subarray(index * MAX_BLOCK_SIZE, (index + 1) * MAX_BLOCK_SIZE);
      expect(result.blocks[index]).toBe(hashOf(expected));
      expect(Buffer.compare(await api.getBlock(created.namespaceId, result.blocks[index]), expected)).toBe(0);
      expect(Buffer.compare(Buffer.from((await blocks.getBlock(result.blocks[index]))!), expected)).toBe(0);
    }
  });
});
