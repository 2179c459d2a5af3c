import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { BlockHash } from '../../src/protocol/index.ts';
import { BlockReadAhead, IN_MEMORY_AHEAD_BYTES, IN_MEMORY_DEPTH, STREAM_DEPTH } from '../../src/server/storage/block-read-ahead.ts';
import type { BlockStore, OpenedBlock } from '../../src/server/storage/block-store.ts';

const hashOf = (i: number) => i.toString(16).padStart(64, '0') as BlockHash;
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A store whose blocks come back at once, in memory or as streams; records which were opened. */
function fakeStore(open: (hash: BlockHash) => OpenedBlock | null) {
  const opened: BlockHash[] = [];
  const streams: Readable[] = [];
  const store = {
    openRead: async (hash: BlockHash) => {
      opened.push(hash);
      const block = open(hash);
      if (block?.stream) streams.push(block.stream);
      return block;
    },
  } as unknown as BlockStore;
  return { store, opened, streams };
}

const inMemory = (size: number): OpenedBlock => ({ size, bytes: Buffer.alloc(size) });
const streamed = (size: number): OpenedBlock => ({ size, stream: Readable.from([Buffer.alloc(size)]) });

describe('BlockReadAhead', () => {
  it('keeps STREAM_DEPTH blocks open ahead while they come as streams', async () => {
    const { store, opened } = fakeStore(() => streamed(100_000));
    const ahead = new BlockReadAhead(store, Array.from({ length: 100 }, (_, i) => hashOf(i)));
    await ahead.take(0);
    await settle();
    expect(opened.length).toBe(STREAM_DEPTH);
    await ahead.take(1);
    await settle();
    expect(opened.length).toBe(STREAM_DEPTH + 1);
    ahead.close();
  });

  it('reads up to IN_MEMORY_DEPTH ahead while blocks come in memory, and only opens each once, in order', async () => {
    const { store, opened } = fakeStore(() => inMemory(1000));
    const hashes = Array.from({ length: 100 }, (_, i) => hashOf(i));
    const ahead = new BlockReadAhead(store, hashes);
    await ahead.take(0);
    await settle();
    expect(opened.length).toBe(IN_MEMORY_DEPTH);
    for (let i = 1; i < hashes.length; i++) expect((await ahead.take(i))?.size).toBe(1000);
    expect(opened).toEqual(hashes);
    ahead.close();
  });

  it('stops reading ahead once IN_MEMORY_AHEAD_BYTES are held, and goes on as they are taken', async () => {
    const size = 60_000;
    const { store, opened } = fakeStore(() => inMemory(size));
    const ahead = new BlockReadAhead(store, Array.from({ length: 100 }, (_, i) => hashOf(i)));
    await ahead.take(0);
    for (let i = 0; i < 5; i++) await settle();
    // Blocks 1… are held (0 was taken): just past the bound, counting the reads under way at the mean size.
    const held = opened.length - 1;
    expect(held * size).toBeGreaterThanOrEqual(IN_MEMORY_AHEAD_BYTES);
    expect((held - 1) * size).toBeLessThan(IN_MEMORY_AHEAD_BYTES);
    await ahead.take(1);
    await settle();
    expect(opened.length).toBeGreaterThan(held + 1);
    ahead.close();
  });

  it('skips refused blocks and destroys the streams it opened ahead when closed', async () => {
    const { store, opened, streams } = fakeStore((hash) => (hash === hashOf(2) ? null : streamed(10)));
    const ahead = new BlockReadAhead(store, [hashOf(0), null, hashOf(2), hashOf(3)]);
    expect((await ahead.take(0))?.size).toBe(10);
    expect(await ahead.take(1)).toBeNull();
    expect(await ahead.take(2)).toBeNull();
    ahead.close();
    await settle();
    expect(opened).toEqual([hashOf(0), hashOf(2), hashOf(3)]);
    expect(streams.map((stream) => stream.destroyed)).toEqual([false, true]);
  });
});
