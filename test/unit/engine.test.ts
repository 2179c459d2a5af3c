import { describe, expect, it } from 'vitest';
import { blobBlocks, cutBlocks } from '../../src/engine/chunker.ts';
import { expectedBlockSize } from '../../src/engine/block-layout.ts';
import { foldEntries } from '../../src/engine/file-table.ts';
import { BlockScheduler } from '../../src/engine/scheduler.ts';
import type { BlockSource, FileRecord, WantedBlock } from '../../src/engine/types.ts';
import { MAX_BLOCK_SIZE, type BlockHash, type FilePath, type JournalEntry, type NamespaceId } from '../../src/protocol/index.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const h = (c: string) => c.repeat(64) as BlockHash;
const entry = (sjid: number, path: string, blocks: BlockHash[], deleted = false): JournalEntry => ({
  sjid,
  path: path as FilePath,
  size: deleted ? 0 : blocks.length,
  mtime: 1,
  blocks,
  deleted,
});

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

describe('journal fold', () => {
  it('keeps the latest entry per path and drops deleted paths', () => {
    const files = new Map<FilePath, FileRecord>();
    const result = foldEntries(files, [
      entry(1, 'a', [h('1')]),
      entry(2, 'b', [h('2')]),
      entry(3, 'a', [h('3')]),
      entry(4, 'b', [], true),
    ]);
    expect([...files.keys()]).toEqual(['a']);
    expect(files.get('a' as FilePath)?.blocks).toEqual([h('3')]);
    expect(files.get('a' as FilePath)?.sjid).toBe(3);
    expect(result.changed.map((f) => f.path)).toEqual(['a']);
    expect(result.removed).toEqual(['b']);
  });
  it('recreates a path deleted earlier', () => {
    const files = new Map<FilePath, FileRecord>();
    foldEntries(files, [entry(1, 'a', [h('1')]), entry(2, 'a', [], true)]);
    const result = foldEntries(files, [entry(3, 'a', [h('4')])]);
    expect(result.changed[0].blocks).toEqual([h('4')]);
    expect(result.removed).toEqual([]);
  });
});

describe('block layout', () => {
  it('expects full 4 MiB blocks and a short last one', () => {
    expect(expectedBlockSize(2 * MAX_BLOCK_SIZE + 10, 3, 0)).toBe(MAX_BLOCK_SIZE);
    expect(expectedBlockSize(2 * MAX_BLOCK_SIZE + 10, 3, 2)).toBe(10);
  });
});

describe('block cutting', () => {
  it('cuts a stream of odd chunk sizes into exact blocks whose hashes match the whole', async () => {
    const data = new Uint8Array(10 * 1000 + 7).map((_, i) => (i * 31) & 255);
    const chunks = [data.subarray(0, 3), data.subarray(3, 4000), data.subarray(4000, 4001), data.subarray(4001)];
    const blocks: Uint8Array[] = [];
    for await (const block of cutBlocks(streamOf(chunks), 1000)) blocks.push(block.slice());
    expect(blocks.map((b) => b.length)).toEqual([...Array(10).fill(1000), 7]);
    const joined = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
    let offset = 0;
    for (const block of blocks) {
      joined.set(block, offset);
      offset += block.length;
    }
    expect(hashOf(joined)).toBe(hashOf(data));
    expect(await nodeSha256(blocks[0])).toBe(hashOf(data.subarray(0, 1000)));
  });
  it('yields nothing for an empty stream and one block for an exact fit', async () => {
    const none: Uint8Array[] = [];
    for await (const block of cutBlocks(streamOf([]), 8)) none.push(block);
    expect(none).toEqual([]);
    const exact: Uint8Array[] = [];
    for await (const block of cutBlocks(streamOf([new Uint8Array(8)]), 8)) exact.push(block);
    expect(exact.map((b) => b.length)).toEqual([8]);
  });
  it('cuts a Blob read slice by slice (blobBlocks) into the same blocks as its stream', async () => {
    const data = new Uint8Array(3 * 1000 + 11).map((_, i) => (i * 7 + 3) & 255);
    const blob = new Blob([data]);
    const bySlices: Uint8Array[] = [];
    for await (const block of cutBlocks(blobBlocks(blob, 1000), 1000)) bySlices.push(block.slice());
    const byStream: Uint8Array[] = [];
    for await (const block of cutBlocks(blob.stream(), 1000)) byStream.push(block.slice());
    expect(bySlices.map((b) => b.length)).toEqual([1000, 1000, 1000, 11]);
    expect(bySlices.map((b) => hashOf(b))).toEqual(byStream.map((b) => hashOf(b)));
    const empty: Uint8Array[] = [];
    for await (const block of cutBlocks(blobBlocks(new Blob([]), 1000), 1000)) empty.push(block);
    expect(empty).toEqual([]);
  });
});

/** A source serving from a map, optionally lying or failing, counting what it was asked. */
class TableSource implements BlockSource {
  asked: BlockHash[] = [];
  inFlightNow = 0;
  maxSeen = 0;
  constructor(
    readonly id: string,
    readonly kind: 'server' | 'peer',
    private readonly table: Map<BlockHash, Uint8Array>,
    readonly maxInFlight = 2,
    private readonly behaviour: 'honest' | 'lies' | 'fails' = 'honest',
    private readonly serves: (want: WantedBlock) => boolean = () => true,
  ) {}
  canServe(want: WantedBlock): boolean {
    return this.serves(want);
  }
  async fetchBlock(want: WantedBlock): Promise<Uint8Array> {
    this.asked.push(want.hash);
    this.inFlightNow += 1;
    this.maxSeen = Math.max(this.maxSeen, this.inFlightNow);
    await new Promise((r) => setTimeout(r, 2));
    this.inFlightNow -= 1;
    if (this.behaviour === 'fails') throw new TypeError('network down');
    const bytes = this.table.get(want.hash);
    if (!bytes) throw new Error('no such block');
    return this.behaviour === 'lies' ? bytes.map((b) => b ^ 1) : bytes;
  }
}

function makeBlocks(count: number): Map<BlockHash, Uint8Array> {
  const table = new Map<BlockHash, Uint8Array>();
  for (let i = 0; i < count; i++) {
    const bytes = new Uint8Array(64).fill(i);
    table.set(hashOf(bytes), bytes);
  }
  return table;
}
const wantAll = (table: Map<BlockHash, Uint8Array>, sjid = 1): WantedBlock[] =>
  [...table.keys()].map((hash) => ({ ns: NS, hash, sjid, sizeHint: 64 }));

describe('block scheduler', () => {
  it('fetches every wanted block once, within the concurrency bounds, and verifies before storing', async () => {
    const table = makeBlocks(20);
    const server = new TableSource('server', 'server', table, 3);
    const store = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [server], maxInFlight: 8, events: {} });
    scheduler.setWanted(wantAll(table));
    await scheduler.whenIdle();
    expect(store.blocks.size).toBe(20);
    expect(server.asked.length).toBe(20);
    expect(server.maxSeen).toBeLessThanOrEqual(3);
  });

  it('prefers a peer that claims the block and uses the server only for what no peer has', async () => {
    const table = makeBlocks(10);
    const server = new TableSource('server', 'server', table, 4);
    const peer = new TableSource('peer-1', 'peer', table, 8, 'honest', (want) => want.sjid <= 5);
    const store = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [server, peer], maxInFlight: 8, events: {} });
    const wanted = wantAll(table).map((want, i) => ({ ...want, sjid: i < 6 ? 5 : 9 }));
    scheduler.setWanted(wanted);
    await scheduler.whenIdle();
    expect(store.blocks.size).toBe(10);
    expect(peer.asked.length).toBe(6);
    expect(server.asked.length).toBe(4);
  });

  it('penalises a lying peer, never stores its bytes, and refetches from the server', async () => {
    const table = makeBlocks(6);
    const server = new TableSource('server', 'server', table, 4);
    const liar = new TableSource('liar', 'peer', table, 8, 'lies');
    const store = new MemoryBlockStore();
    const penalised: string[] = [];
    const scheduler = new BlockScheduler({
      store,
      sha256: nodeSha256,
      sources: () => [server, liar],
      maxInFlight: 8,
      events: { penalised: (source) => penalised.push(source.id) },
    });
    scheduler.setWanted(wantAll(table));
    await scheduler.whenIdle();
    expect(penalised).toEqual(['liar']);
    expect(scheduler.isPenalised('liar')).toBe(true);
    for (const [hash, bytes] of store.blocks) expect(hashOf(bytes)).toBe(hash);
    expect(store.blocks.size).toBe(6);
    // Only requests already in flight when it was caught went to the liar.
    expect(liar.asked.length).toBeLessThanOrEqual(6);
    expect(server.asked.length).toBe(6);
  });

  it('moves a block to the next source when one fails', async () => {
    const table = makeBlocks(4);
    const broken = new TableSource('broken', 'peer', table, 8, 'fails');
    const server = new TableSource('server', 'server', table, 4);
    const store = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [broken, server], maxInFlight: 8, events: {} });
    scheduler.setWanted(wantAll(table));
    await scheduler.whenIdle();
    expect(store.blocks.size).toBe(4);
    expect(scheduler.isPenalised('broken')).toBe(false);
  });

  it('drops blocks that stop being wanted', async () => {
    const table = makeBlocks(30);
    const server = new TableSource('server', 'server', table, 1);
    const store = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [server], maxInFlight: 1, events: {} });
    scheduler.setWanted(wantAll(table));
    scheduler.setWanted([]);
    await scheduler.whenIdle();
    expect(server.asked.length).toBeLessThanOrEqual(1);
  });
});

describe('source choice', () => {
  it('lets a block wait for a busy peer that claims it rather than ask the server', async () => {
    const table = makeBlocks(12);
    const server = new TableSource('server', 'server', table, 4);
    const peer = new TableSource('peer-1', 'peer', table, 1);
    const store = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [server, peer], maxInFlight: 8, events: {} });
    scheduler.setWanted(wantAll(table));
    await scheduler.whenIdle();
    expect(store.blocks.size).toBe(12);
    expect(peer.asked.length).toBe(12);
    expect(server.asked.length).toBe(0);
    expect(peer.maxSeen).toBe(1);
  });

  it('gives more requests to the peer with more measured throughput per outstanding request', async () => {
    const table = makeBlocks(40);
    const fast = Object.assign(new TableSource('fast', 'peer', table, 4), { bytesPerSecond: () => 40e6 });
    const slow = Object.assign(new TableSource('slow', 'peer', table, 4), { bytesPerSecond: () => 4e6 });
    const store = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [slow, fast], maxInFlight: 4, events: {} });
    scheduler.setWanted(wantAll(table));
    await scheduler.whenIdle();
    expect(store.blocks.size).toBe(40);
    expect(fast.asked.length).toBeGreaterThan(slow.asked.length);
  });
});

describe('fetch order', () => {
  it('scatters blocks differently per seed, stays stable for one seed, and keeps windows in journal order', async () => {
    const { spreadFetchOrder } = await import('../../src/engine/fetch-order.ts');
    const wanted = wantAll(makeBlocks(128));
    const a = spreadFetchOrder(wanted, 11).map((w) => w.hash);
    const b = spreadFetchOrder(wanted, 22).map((w) => w.hash);
    expect(new Set(a)).toEqual(new Set(wanted.map((w) => w.hash)));
    expect(a).not.toEqual(b);
    expect(spreadFetchOrder(wanted, 11).map((w) => w.hash)).toEqual(a);
    // The first window holds exactly the first 64 blocks of the journal order.
    expect(new Set(a.slice(0, 64))).toEqual(new Set(wanted.slice(0, 64).map((w) => w.hash)));
    expect(spreadFetchOrder(wanted, 0).map((w) => w.hash)).toEqual(wanted.map((w) => w.hash));
  });
});

describe('yielding a server fetch', () => {
  it('puts the block back in the queue without counting a failure, and it waits for a peer that claims it', async () => {
    const table = makeBlocks(1);
    const [hash] = [...table.keys()];
    let release: (() => void) | null = null;
    const slowServer: BlockSource = {
      id: 'server',
      kind: 'server',
      maxInFlight: 4,
      canServe: () => !peerClaims,
      fetchBlock: (_want, signal) =>
        new Promise((resolve, reject) => {
          release = () => resolve(table.get(hash)!);
          signal.addEventListener('abort', () => reject(signal.reason));
        }),
    };
    let peerClaims = false;
    const peer = new TableSource('peer-1', 'peer', table, 2, 'honest', () => peerClaims);
    const store = new MemoryBlockStore();
    const failures: string[] = [];
    const scheduler = new BlockScheduler({
      store,
      sha256: nodeSha256,
      sources: () => [slowServer, peer],
      maxInFlight: 4,
      events: { failed: (_w, source) => failures.push(source.id) },
    });
    scheduler.setWanted(wantAll(table));
    await until(() => scheduler.inFlightFrom('server').length === 1);
    // Another device fetches it too; it has the block soon, so this one gives way.
    peerClaims = true;
    expect(scheduler.yieldFetch(hash, 'server')).toBe(true);
    scheduler.wake();
    await scheduler.whenIdle();
    expect(release).not.toBeNull();
    expect(failures).toEqual([]);
    expect(peer.asked).toEqual([hash]);
    expect(store.blocks.has(hash)).toBe(true);
    expect(scheduler.yieldFetch(hash, 'server')).toBe(false);
  });
});
