import { createHash, randomFillSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockBufferPool } from '../../src/engine/block-buffers.ts';
import { MAX_BLOCK_SIZE } from '../../src/protocol/index.ts';
import { Sha256Worker, sharedBytes } from '../../src/lan/store/sha256-worker.ts';

const hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('Sha256Worker', () => {
  const worker = new Sha256Worker();
  afterEach(() => worker.close());

  it('hashes bytes in shared memory on the worker, in place: the same digest, and the bytes are still the caller’s', async () => {
    const bytes = randomFillSync(sharedBytes(MAX_BLOCK_SIZE));
    const before = worker.offloaded;
    const views = [bytes, bytes.subarray(1000, 1000 + 300 * 1024), bytes.subarray(MAX_BLOCK_SIZE - 256 * 1024)];
    const hashes = await Promise.all(views.map((view) => worker.hash(view)));
    expect(hashes).toEqual(views.map(hex));
    expect(worker.offloaded).toBe(before + 3);
    // Nothing was transferred away: the caller's view still holds its bytes.
    expect(bytes.byteLength).toBe(MAX_BLOCK_SIZE);
  });

  it('hashes ordinary and small buffers on the calling thread (never cloned to the worker)', async () => {
    const before = worker.offloaded;
    const plain = randomFillSync(new Uint8Array(MAX_BLOCK_SIZE));
    const small = randomFillSync(sharedBytes(1000));
    expect(await worker.hash(plain)).toBe(hex(plain));
    expect(await worker.hash(small)).toBe(hex(small));
    expect(worker.offloaded).toBe(before);
  });

  it('finishes the hashes in flight when closed, and starts again on the next call', async () => {
    const blocks = Array.from({ length: 4 }, () => randomFillSync(sharedBytes(MAX_BLOCK_SIZE)));
    const pending = blocks.map((block) => worker.hash(block));
    await worker.close();
    expect(await Promise.all(pending)).toEqual(blocks.map(hex));
    const again = randomFillSync(sharedBytes(MAX_BLOCK_SIZE));
    expect(await worker.hash(again)).toBe(hex(again));
  });

  it('hashes the shared buffers of a LAN block pool where they are', async () => {
    const pool = new BlockBufferPool(MAX_BLOCK_SIZE, 4, 10_000, true);
    const buffer = pool.take();
    expect(buffer).toBeInstanceOf(SharedArrayBuffer);
    const block = randomFillSync(new Uint8Array(buffer, 0, 3 * 1024 * 1024));
    const before = worker.offloaded;
    expect(await worker.hash(block)).toBe(hex(block));
    expect(worker.offloaded).toBe(before + 1);
    pool.give(block);
    expect(pool.freeCount).toBe(1);
  });

  it('a shared pool keeps every buffer given back, past `keep` (dropped shared buffers would pile up uncollected)', () => {
    const pool = new BlockBufferPool(1024 * 1024, 2, 10_000, true);
    const taken = Array.from({ length: 5 }, () => pool.take());
    for (const buffer of taken) pool.give(new Uint8Array(buffer));
    expect(pool.freeCount).toBe(5);
    const plain = new BlockBufferPool(1024 * 1024, 2, 10_000);
    for (const buffer of Array.from({ length: 5 }, () => plain.take())) plain.give(new Uint8Array(buffer));
    expect(plain.freeCount).toBe(2);
  });
});
