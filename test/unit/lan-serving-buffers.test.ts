import { describe, expect, it } from 'vitest';
import { ServingBuffers } from '../../src/lan/tcp/serving-buffers.ts';
import { MAX_BLOCK_SIZE } from '../../src/protocol/index.ts';

/** The serving pool: a block's buffer is used again only once every byte of it was written out. */
describe('ServingBuffers', () => {
  it('reuses a buffer only after the socket took every byte of its block, in any number of chunks', () => {
    const pool = new ServingBuffers();
    const first = pool.take(MAX_BLOCK_SIZE - 5);
    first.fill(1);
    pool.written(first.subarray(0, 262_134));
    // Part of the block is still to be sent: a new block gets another buffer.
    const second = pool.take(MAX_BLOCK_SIZE);
    expect(second.buffer).not.toBe(first.buffer);
    expect(pool.created).toBe(2);
    pool.written(first.subarray(262_134));
    expect(pool.freeCount).toBe(1);
    const third = pool.take(1_000_000);
    expect(third.buffer).toBe(first.buffer);
    expect(third.length).toBe(1_000_000);
    expect(pool.created).toBe(2);
  });

  it('never reuses a block that was not sent whole (cancelled, refused, connection lost)', () => {
    const pool = new ServingBuffers();
    const cut = pool.take(MAX_BLOCK_SIZE);
    pool.written(cut.subarray(0, 1000));
    const unsent = pool.take(MAX_BLOCK_SIZE);
    void unsent;
    expect(pool.freeCount).toBe(0);
    expect(pool.take(MAX_BLOCK_SIZE).buffer).not.toBe(cut.buffer);
    expect(pool.created).toBe(3);
  });

  it('takes back a buffer whose read failed, and ignores bytes it never lent', () => {
    const pool = new ServingBuffers();
    const failed = pool.take(MAX_BLOCK_SIZE);
    pool.giveBack(failed);
    pool.giveBack(failed);
    pool.written(new Uint8Array(MAX_BLOCK_SIZE));
    expect(pool.freeCount).toBe(1);
    expect(pool.take(MAX_BLOCK_SIZE).buffer).toBe(failed.buffer);
  });

  it('gives small blocks buffers of their own size, never pooled', () => {
    const pool = new ServingBuffers();
    const small = pool.take(5_000);
    expect(small.buffer.byteLength).toBe(5_000);
    pool.written(small);
    expect(pool.freeCount).toBe(0);
    expect(pool.created).toBe(0);
  });
});
