import { describe, expect, it } from 'vitest';
import { LiveBlocks } from '../../src/engine/live-blocks.ts';
import type { FileRecord } from '../../src/engine/types.ts';
import { MAX_BLOCK_SIZE, type BlockHash, type FilePath, type NamespaceId } from '../../src/protocol/index.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const hash = (n: number) => n.toString(16).padStart(64, '0') as BlockHash;
// Sizes follow the 4 MiB layout: every block but the last is full, the last holds 10 bytes.
const sizeOf = (blocks: number) => (blocks - 1) * MAX_BLOCK_SIZE + 10;
const file = (path: string, sjid: number, blocks: number[], size = sizeOf(blocks.length)): FileRecord => ({
  path: path as FilePath,
  size,
  mtime: sjid,
  sjid,
  blocks: blocks.map(hash),
});
const add = (...files: FileRecord[]) => files.map((f) => ({ path: f.path, next: f }));

describe('LiveBlocks', () => {
  it('wants each missing block once, in the order files were given, and none already stored', () => {
    const live = new LiveBlocks(NS);
    live.markStored([hash(2)]);
    const delta = live.apply(add(file('a', 1, [1, 2]), file('b', 2, [1, 3])));
    expect(delta.added.map((w) => w.hash)).toEqual([hash(1), hash(3)]);
    expect(delta.added[0].sjid).toBe(1);
    expect(delta.removed).toEqual([]);
    expect(live.missingCount).toBe(2);
    expect(live.totalBytes).toBe(2 * sizeOf(2));
    expect(live.doneBytes).toBe(10);
  });

  it('wants nothing for an empty file, which counts as complete at once', () => {
    const live = new LiveBlocks(NS);
    const delta = live.apply(add(file('empty', 1, [], 0)));
    expect(delta.added).toEqual([]);
    expect(live.isComplete('empty' as FilePath)).toBe(true);
    expect(live.missingCount).toBe(0);
  });

  it('wants a block used twice by one file once, and counts both uses when it arrives', () => {
    const live = new LiveBlocks(NS);
    expect(live.apply(add(file('dup', 1, [5, 5]))).added.map((w) => w.hash)).toEqual([hash(5)]);
    live.stored(hash(5));
    expect(live.bytesDone('dup' as FilePath)).toBe(sizeOf(2));
  });

  it('counts a file complete when its last block arrives, and reports the files that waited for it', () => {
    const live = new LiveBlocks(NS);
    live.apply(add(file('a', 1, [1, 2]), file('b', 2, [2, 2])));
    expect([...live.stored(hash(2))].sort()).toEqual(['a', 'b']);
    expect(live.isComplete('b' as FilePath)).toBe(true);
    expect(live.isComplete('a' as FilePath)).toBe(false);
    expect(live.bytesDone('a' as FilePath)).toBe(10);
    live.stored(hash(1));
    expect(live.bytesDone('a' as FilePath)).toBe(sizeOf(2));
    expect(live.isComplete('a' as FilePath)).toBe(true);
    expect(live.doneBytes).toBe(live.totalBytes);
    expect(live.missingCount).toBe(0);
  });

  it('stops wanting a block when the last file needing it goes, not before', () => {
    const live = new LiveBlocks(NS);
    live.apply(add(file('a', 1, [1]), file('b', 2, [1, 2])));
    expect(live.apply([{ path: 'a' as FilePath, next: null }]).removed).toEqual([]);
    const delta = live.apply([{ path: 'b' as FilePath, next: null }]);
    expect(delta.removed.sort()).toEqual([hash(1), hash(2)]);
    expect(live.totalBytes).toBe(0);
    expect(live.doneBytes).toBe(0);
    expect(live.isLive(hash(1))).toBe(false);
  });

  it('a new version that reuses a block keeps it wanted without asking again', () => {
    const live = new LiveBlocks(NS);
    live.apply(add(file('a', 1, [1, 2])));
    const delta = live.apply(add(file('a', 2, [2, 3])));
    expect(delta.added.map((w) => w.hash)).toEqual([hash(3)]);
    expect(delta.removed).toEqual([hash(1)]);
  });

  it('tracks bytes by the 4 MiB layout', () => {
    const live = new LiveBlocks(NS);
    const big = file('big', 1, [1, 2], MAX_BLOCK_SIZE + 5);
    live.apply(add(big));
    live.stored(hash(2));
    expect(live.bytesDone('big' as FilePath)).toBe(5);
    live.stored(hash(1));
    expect(live.bytesDone('big' as FilePath)).toBe(MAX_BLOCK_SIZE + 5);
  });

  it('forgetting stored blocks wants them again for the files that use them', () => {
    const live = new LiveBlocks(NS);
    live.apply(add(file('a', 1, [1, 2])));
    live.stored(hash(1));
    live.stored(hash(2));
    expect(live.missingCount).toBe(0);
    const delta = live.forget([hash(1)]);
    expect(delta.added.map((w) => w.hash)).toEqual([hash(1)]);
    expect(live.isComplete('a' as FilePath)).toBe(false);
    expect(live.doneBytes).toBe(10);
    expect(live.totalBytes).toBe(sizeOf(2));
  });

  it('costs per change, not per workspace: 100,000 files in, one out, one block stored', () => {
    const live = new LiveBlocks(NS);
    const files = Array.from({ length: 100_000 }, (_, i) => file(`d${i % 100}/f${i}`, i + 1, [i + 1]));
    live.apply(add(...files));
    expect(live.missingCount).toBe(100_000);
    // Not a timing assertion: the work is visible as the size of what comes back.
    expect(live.apply([{ path: files[5].path, next: null }]).removed).toEqual([hash(6)]);
    expect([...live.stored(hash(7))]).toEqual([files[6].path]);
  });
});
