import { describe, expect, it } from 'vitest';
import { LruBlockCache } from '../../src/engine/block-cache.ts';
import { KeepPolicy, parseKeepSettings } from '../../src/engine/keep-policy.ts';
import { LiveBlocks } from '../../src/engine/live-blocks.ts';
import { NamespaceSync } from '../../src/engine/namespace-sync.ts';
import type { BlockSource, FileRecord, WantedBlock } from '../../src/engine/types.ts';
import type { BlockHash, FilePath, JournalPage, NamespaceId } from '../../src/protocol/index.ts';
import { MemoryBlockStore, MemoryStateStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';
import { onePageJournal } from '../support/one-page-journal.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const h = (name: string) => hashOf(new TextEncoder().encode(name));

describe('KeepPolicy', () => {
  it('takes the nearest folder above a file that has a setting, the workspace setting as the base, keep by default', () => {
    expect(new KeepPolicy().modeOf('a/b.txt')).toBe('keep');
    const policy = new KeepPolicy([
      { folder: '', mode: 'online' },
      { folder: 'Projects', mode: 'keep' },
      { folder: 'Projects/Archive', mode: 'online' },
      { folder: 'Projects/Archive/2024/current', mode: 'keep' },
    ]);
    expect(policy.modeOf('top.txt')).toBe('online');
    expect(policy.modeOf('Photos/x.jpg')).toBe('online');
    expect(policy.modeOf('Projects/plan.md')).toBe('keep');
    expect(policy.modeOf('Projects/Archive/old.zip')).toBe('online');
    expect(policy.modeOf('Projects/Archive/2024/a/b.bin')).toBe('online');
    expect(policy.modeOf('Projects/Archive/2024/current/now.txt')).toBe('keep');
    // A folder's own setting counts for the folder; a name that merely starts alike does not.
    expect(policy.modeOf('Projects/Archive')).toBe('online');
    expect(policy.modeOf('Projects/Archived/x')).toBe('keep');
    expect(policy.modeOf('ProjectsX/y')).toBe('online');
    expect(policy.mayHaveOnlineOnly).toBe(true);
  });

  it('replaces the settings below a folder given a new mode, and drops a folder’s own setting with null', () => {
    const policy = new KeepPolicy([{ folder: 'A/B', mode: 'online' }, { folder: 'A/C', mode: 'keep' }, { folder: 'D', mode: 'online' }]);
    const next = policy.with('A', 'keep');
    expect(next.settings()).toEqual([{ folder: 'A', mode: 'keep' }, { folder: 'D', mode: 'online' }]);
    expect(next.with('D', null).settings()).toEqual([{ folder: 'A', mode: 'keep' }]);
    // The workspace set to keep is the default: nothing left to store.
    expect(new KeepPolicy([{ folder: '', mode: 'online' }]).with('', 'keep').settings()).toEqual([]);
    expect(new KeepPolicy().with('/X/', 'online').settings()).toEqual([{ folder: 'X', mode: 'online' }]);
  });

  it('refuses settings that are not folder/mode pairs', () => {
    expect(parseKeepSettings([{ folder: 'a/', mode: 'online' }])).toEqual([{ folder: 'a', mode: 'online' }]);
    expect(() => parseKeepSettings({})).toThrow(/array/);
    expect(() => parseKeepSettings([{ folder: 'a', mode: 'sometimes' }])).toThrow(/mode/);
    expect(() => parseKeepSettings([{ folder: 3, mode: 'keep' }])).toThrow(/folder/);
  });
});

describe('LruBlockCache', () => {
  it('counts bytes, evicts least recently used first down to the limit, and spares what is being read', () => {
    const cache = new LruBlockCache(10);
    cache.touch(h('a'), 4);
    cache.touch(h('b'), 4);
    cache.touch(h('a'), 4); // a is now the most recent
    expect(cache.bytes).toBe(8);
    cache.touch(h('c'), 4);
    expect(cache.bytes).toBe(12);
    expect(cache.evictOverflow()).toEqual([h('b')]);
    expect(cache.bytes).toBe(8);
    cache.touch(h('d'), 6);
    // a is the oldest but being read: c goes, then d would be next but the rest fit.
    expect(cache.evictOverflow(new Set([h('a')]))).toEqual([h('c')]);
    expect(cache.bytes).toBe(10);
    cache.remove(h('a'));
    cache.remove(h('nothing'));
    expect(cache.bytes).toBe(6);
    expect(cache.evictOverflow()).toEqual([]);
  });

  it('puts blocks of unknown age first, keeps a block once, and empties itself when told', () => {
    const cache = new LruBlockCache(100);
    cache.touch(h('warm'), 10);
    cache.addAllCold([[h('cold1'), 5], [h('warm'), 10], [h('cold2'), 5]]);
    expect(cache.bytes).toBe(20);
    expect([...cache.keys()]).toEqual([h('cold1'), h('cold2'), h('warm')]);
    cache.addCold(h('cold0'), 1);
    expect([...cache.keys()][0]).toBe(h('cold0'));
    cache.setLimit(12);
    expect(cache.evictOverflow()).toEqual([h('cold0'), h('cold1'), h('cold2')]);
    expect(cache.evictAll(new Set([h('warm')]))).toEqual([]);
    expect(cache.evictAll()).toEqual([h('warm')]);
    expect(cache.bytes).toBe(0);
    expect(cache.limit).toBe(12);
  });
});

describe('LiveBlocks with online-only files', () => {
  const MiB4 = 4 * 1024 * 1024;
  const file = (path: string, blocks: BlockHash[], sjid: number, size = blocks.length * MiB4): FileRecord => ({ path: path as FilePath, size, mtime: 1, blocks, sjid });

  it('wants only blocks of kept files, counts only kept files in the totals, and keeps shared blocks', () => {
    const live = new LiveBlocks(NS, (path) => !path.startsWith('cloud/'));
    const delta = live.apply([
      { path: 'kept.bin' as FilePath, next: file('kept.bin', [h('k1'), h('shared')], 1) },
      { path: 'cloud/a.bin' as FilePath, next: file('cloud/a.bin', [h('o1'), h('shared')], 2) },
    ]);
    expect(delta.added.map((want) => want.hash).sort()).toEqual([h('k1'), h('shared')].sort());
    expect(live.totalBytes).toBe(2 * MiB4);
    expect(live.onlineBytes).toBe(2 * MiB4);
    expect(live.onlineFileCount).toBe(1);
    expect(live.isKeptBlock(h('shared'))).toBe(true);
    expect(live.isKeptBlock(h('o1'))).toBe(false);
    expect(live.isLive(h('o1'))).toBe(true);
    // The online file's row hears of its blocks arriving and leaving.
    expect([...live.stored(h('o1'))]).toEqual(['cloud/a.bin']);
    expect(live.bytesDone('cloud/a.bin' as FilePath)).toBe(MiB4);
    expect([...live.heldOnlineOnly()]).toEqual([[h('o1'), MiB4]]);
    expect([...live.dropped([h('o1'), h('k1')])]).toEqual(['cloud/a.bin']);
    expect(live.holds(h('o1'))).toBe(false);
    // A kept block is never taken by dropped().
    live.stored(h('k1'));
    live.dropped([h('k1')]);
    expect(live.holds(h('k1'))).toBe(true);
  });

  it('re-plans when the policy changes: newly kept files want their missing blocks, newly online ones stop wanting', () => {
    let cloudKept = false;
    const live = new LiveBlocks(NS, (path) => cloudKept || !path.startsWith('cloud/'));
    live.apply([{ path: 'cloud/a.bin' as FilePath, next: file('cloud/a.bin', [h('o1'), h('o2')], 1) }]);
    expect(live.missingCount).toBe(0);
    live.stored(h('o1'));
    cloudKept = true;
    const keep = live.setKeep((path) => cloudKept || !path.startsWith('cloud/'));
    expect(keep.added.map((want) => want.hash)).toEqual([h('o2')]);
    expect(live.totalBytes).toBe(2 * MiB4);
    expect(live.doneBytes).toBe(MiB4);
    expect(live.isComplete('cloud/a.bin' as FilePath)).toBe(false);
    cloudKept = false;
    const online = live.setKeep((path) => cloudKept || !path.startsWith('cloud/'));
    expect(online.removed).toEqual([h('o2')]);
    expect(live.missingCount).toBe(0);
    expect(live.totalBytes).toBe(0);
  });
});

/** A server source counting what it was asked for. */
class CountingServer implements BlockSource {
  readonly id = 'server';
  readonly kind = 'server' as const;
  readonly maxInFlight = 4;
  readonly asked: BlockHash[] = [];
  constructor(private readonly table: Map<BlockHash, Uint8Array>) {}
  canServe(): boolean {
    return true;
  }
  async fetchBlock(want: WantedBlock): Promise<Uint8Array> {
    this.asked.push(want.hash);
    const bytes = this.table.get(want.hash);
    if (!bytes) throw new Error('no such block');
    return bytes;
  }
}


describe('NamespaceSync with online-only files', () => {
  const bytesOf = (name: string) => new TextEncoder().encode(name.repeat(100));
  const names = ['k1', 'o1', 'o2', 'o3'];
  const table = new Map(names.map((name) => [hashOf(bytesOf(name)), bytesOf(name)] as const));
  const [k1, o1, o2, o3] = [...table.keys()];
  const wantOf = (hash: BlockHash): WantedBlock => ({ ns: NS, hash, sjid: 2, sizeHint: 200 });

  async function engineWith(options: { cacheLimitBytes?: number; holdFetching?: boolean } = {}) {
    const server = new CountingServer(table);
    const store = new MemoryBlockStore();
    const evicted: BlockHash[] = [];
    const synced: number[] = [];
    let caughtUp = false;
    const engine = new NamespaceSync({
      ns: NS,
      journal: onePageJournal({
        entries: [
          { sjid: 1, path: 'kept.txt', size: 200, mtime: 1, blocks: [k1], deleted: false },
          { sjid: 2, path: 'cloud/big.bin', size: 600, mtime: 1, blocks: [o1, o2, o3], deleted: false },
        ],
        cursor: 2,
        more: false,
      } as unknown as JournalPage),
      state: new MemoryStateStore(),
      blocks: store,
      sha256: nodeSha256,
      sources: () => [server],
      keepPolicy: new KeepPolicy([{ folder: 'cloud', mode: 'online' }]),
      cacheLimitBytes: options.cacheLimitBytes ?? 1000,
      holdFetching: options.holdFetching,
      onCaughtUp: () => (caughtUp = true),
      onSynced: (cursor) => synced.push(cursor),
      evictBlocks: async (hashes) => {
        evicted.push(...hashes);
        for (const hash of hashes) store.blocks.delete(hash);
      },
    });
    await engine.start();
    await until(() => caughtUp);
    return { engine, server, store, evicted, synced };
  }

  it('syncs only kept files, is in sync then, and advertises no cursor while some files are online only', async () => {
    const { engine, server, store, synced } = await engineWith();
    await until(() => engine.syncedCursor === 2);
    expect(server.asked).toEqual([k1]);
    expect([...store.blocks.keys()]).toEqual([k1]);
    expect(engine.summary()).toMatchObject({ totalBytes: 200, doneBytes: 200, onlineFileCount: 1, onlineBytes: 600, cacheBytes: 0 });
    expect(engine.fileProgress('cloud/big.bin' as FilePath)).toMatchObject({ status: 'online', onlineOnly: true, bytesDone: 0 });
    expect(engine.advertisedCursor).toBe(0);
    expect(synced).toContain(2);
    await engine.stop();
  });

  it('fetches an online-only file’s blocks when read, keeps them in the cache, and evicts the least recently used over the limit', async () => {
    const { engine, server, store, evicted } = await engineWith({ cacheLimitBytes: 400 });
    await until(() => engine.syncedCursor === 2);
    await engine.fetchBlocksNow([wantOf(o1), wantOf(o2)]);
    expect(server.asked.filter((hash) => hash !== k1).sort()).toEqual([o1, o2].sort());
    expect(engine.summary().cacheBytes).toBe(400);
    // Once the fetches are done, the file is online only, two thirds here.
    await until(() => engine.fileProgress('cloud/big.bin' as FilePath)?.status === 'online');
    // 600 bytes now, but the blocks of the last few reads are never evicted (their readers are at them).
    await engine.fetchBlocksNow([wantOf(o3)]);
    expect(engine.summary().cacheBytes).toBe(600);
    expect(engine.fileProgress('cloud/big.bin' as FilePath)).toMatchObject({ status: 'synced', bytesDone: 600 });
    expect(evicted).toEqual([]);
    // Reads of the kept block (never cached) age them; reading o3 again makes o1 the least recently used.
    for (let i = 0; i < 3; i++) await engine.fetchBlocksNow([wantOf(k1)]);
    await engine.fetchBlocksNow([wantOf(o3)]);
    expect(evicted).toEqual([o1]);
    expect(store.blocks.has(o1)).toBe(false);
    expect(engine.summary().cacheBytes).toBe(400);
    await until(() => engine.fileProgress('cloud/big.bin' as FilePath)?.status === 'online');
    // An evicted block read again is simply fetched again.
    const before = server.asked.length;
    await engine.fetchBlocksNow([wantOf(o1)]);
    expect(server.asked.slice(before)).toEqual([o1]);
    expect(store.blocks.has(o1)).toBe(true);
    // The kept block never left.
    expect(store.blocks.has(k1)).toBe(true);
    await engine.stop();
  });

  it('keeping a folder fetches its blocks and advertises the synced cursor again; holding fetches nothing but readers’ blocks', async () => {
    const { engine, server } = await engineWith({ holdFetching: true });
    expect(engine.fetchingHeld).toBe(true);
    await engine.fetchBlocksNow([wantOf(o2)]);
    expect(server.asked).toEqual([o2]);
    engine.setKeepPolicy(new KeepPolicy());
    engine.releaseFetching();
    await until(() => engine.syncedCursor === 2);
    expect(server.asked.slice(1).sort()).toEqual([k1, o1, o3].sort());
    expect(engine.advertisedCursor).toBe(2);
    expect(engine.summary()).toMatchObject({ totalBytes: 800, doneBytes: 800, onlineFileCount: 0, cacheBytes: 0 });
    await engine.stop();
  });

  it('reads ahead at most a quarter of the cache, from one block up to eight', async () => {
    const MiB = 1024 * 1024;
    for (const [limit, blocks] of [
      [1000, 1],
      [32 * MiB, 2],
      [64 * MiB, 4],
      [1024 * MiB, 8],
    ] as const) {
      const { engine } = await engineWith({ cacheLimitBytes: limit });
      expect(engine.readAheadBlocks(), `a cache of ${limit} bytes`).toBe(blocks);
      await engine.stop();
    }
  });
});
