import { describe, expect, it } from 'vitest';
import { fetchVersionBlocks } from '../../src/engine/version-blocks.ts';
import { ValidationError, parseDeletedFilesResponse, type BlockHash, type NamespaceId, type VersionEntry } from '../../src/protocol/index.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';

const file = (sjid: number, extra: Record<string, unknown> = {}) => ({
  path: `f${sjid}.txt`,
  sjid,
  deletedAt: 1_765_000_000_000,
  device: 'Ann',
  lastSjid: sjid - 1,
  size: 5,
  mtime: 1,
  ...extra,
});

describe('recently deleted answers from a server are checked', () => {
  it('accepts deletions newest first, labels or null, and ignores fields it does not know', () => {
    const page = parseDeletedFilesResponse({ files: [file(9), file(4, { device: null, extra: 1 })], more: true });
    expect(page.files.map((f) => [f.path, f.sjid, f.device, f.lastSjid])).toEqual([
      ['f9.txt', 9, 'Ann', 8],
      ['f4.txt', 4, null, 3],
    ]);
    expect(page.files[1]).not.toHaveProperty('extra');
    expect(parseDeletedFilesResponse({ files: [], more: false })).toEqual({ files: [], more: false });
  });

  it('refuses a wrong order, a repeated path, a page past `before`, bad paths, labels and numbers', () => {
    const bad: unknown[] = [
      { files: [file(3), file(5)], more: false },
      { files: [file(3), file(3, { path: 'other' })], more: false },
      { files: [file(5), file(3, { path: 'f5.txt' })], more: false },
      { files: [file(3, { path: '../etc/passwd' })], more: false },
      { files: [file(3, { path: '/abs' })], more: false },
      { files: [file(3, { device: 'a\u202eb' })], more: false },
      { files: [file(3, { device: 'x'.repeat(41) })], more: false },
      { files: [file(3, { lastSjid: 3 })], more: false },
      { files: [file(3, { lastSjid: 0 })], more: false },
      { files: [file(3, { size: -1 })], more: false },
      { files: [file(3, { size: 2 ** 60 })], more: false },
      { files: [file(3, { deletedAt: '2026-12-06' })], more: false },
      // Past what a Date can hold: the UI could not show it.
      { files: [file(3, { deletedAt: 8.7e15 })], more: false },
      { files: [file(3, { mtime: 2 ** 53 - 1 })], more: false },
      { files: [file(3, { sjid: 1.5 })], more: false },
      { files: [file(3)] },
      { files: Array.from({ length: 1001 }, (_, i) => file(2000 - i)), more: false },
      { files: 'all of them', more: false },
      null,
    ];
    for (const body of bad) expect(() => parseDeletedFilesResponse(body), JSON.stringify(body)?.slice(0, 80)).toThrow(ValidationError);
    expect(() => parseDeletedFilesResponse({ files: [file(7)], more: false }, 7)).toThrow(/below the one before/);
  });
});

describe('fetching an old version\'s blocks', () => {
  const ns = 'gLYh2GuQa-XXMRoUUKJCRg' as NamespaceId;
  const bytes = [new Uint8Array([1, 2, 3]), new Uint8Array([4, 5])];
  const hashes = bytes.map(hashOf);
  const version: VersionEntry = { sjid: 3, path: 'a.txt' as VersionEntry['path'], size: 5, mtime: 1, blocks: hashes, deleted: false, device: null, committedAt: null };

  it('refuses bytes that do not match their hash and stores nothing of them', async () => {
    const store = new MemoryBlockStore();
    // A hostile server: answers every hash with the bytes of the other block.
    const hostile = { getBlocks: async (_ns: NamespaceId, asked: readonly BlockHash[]) => new Map(asked.map((hash) => [hash, bytes[hashes.indexOf(hash) ^ 1]])) };
    await expect(fetchVersionBlocks(ns, version, hostile, store, nodeSha256)).rejects.toThrow(/do not match its hash/);
    expect(store.blocks.size).toBe(0);
  });

  it('fails with the reason when the server answers none of the blocks, and asks only for what is missing', async () => {
    const store = new MemoryBlockStore();
    await store.putBlock(hashes[0], bytes[0]);
    const asked: BlockHash[][] = [];
    const empty = { getBlocks: async (_ns: NamespaceId, wanted: readonly BlockHash[]) => (asked.push([...wanted]), new Map<BlockHash, Uint8Array>()) };
    await expect(fetchVersionBlocks(ns, version, empty, store, nodeSha256)).rejects.toThrow(/no longer holds block/);
    expect(asked).toEqual([[hashes[1]]]);
    await expect(fetchVersionBlocks(ns, { ...version, deleted: true, blocks: [], size: 0 }, empty, store, nodeSha256)).rejects.toThrow(/is a deletion/);
  });
});
