import { describe, expect, it } from 'vitest';
import { NamespaceSync } from '../../src/engine/namespace-sync.ts';
import { BlockScheduler } from '../../src/engine/scheduler.ts';
import { ApiError } from '../../src/engine/server-api.ts';
import type { BlockSource, WantedBlock } from '../../src/engine/types.ts';
import type { BlockHash, JournalPage, NamespaceId } from '../../src/protocol/index.ts';
import { MemoryBlockStore, MemoryStateStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';
import { onePageJournal } from '../support/one-page-journal.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const BIG = 1024 * 1024;

function blocks(count: number): Map<BlockHash, Uint8Array> {
  const table = new Map<BlockHash, Uint8Array>();
  for (let i = 0; i < count; i++) {
    const bytes = new Uint8Array(64);
    new DataView(bytes.buffer).setUint32(0, i + 1);
    table.set(hashOf(bytes), bytes);
  }
  return table;
}
const wantsOf = (hashes: Iterable<BlockHash>, sjid = 1): WantedBlock[] => [...hashes].map((hash) => ({ ns: NS, hash, sjid, sizeHint: BIG }));

/** A source that takes `holdMs` per block and logs when each fetch starts and ends (or is aborted). */
class TracedSource implements BlockSource {
  readonly log: string[] = [];
  aborted = 0;
  constructor(
    readonly id: string,
    readonly kind: 'server' | 'peer',
    private readonly table: Map<BlockHash, Uint8Array>,
    readonly maxInFlight: number,
    private readonly holdMs: number,
    private readonly serves: (want: WantedBlock) => boolean = () => true,
    private readonly refuse: ReadonlySet<BlockHash> = new Set(),
  ) {}
  canServe(want: WantedBlock): boolean {
    return this.serves(want);
  }
  async fetchBlock(want: WantedBlock, signal: AbortSignal): Promise<Uint8Array> {
    this.log.push(`start ${want.hash}`);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, this.holdMs);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          this.aborted += 1;
          reject(signal.reason);
        });
      });
    } finally {
      this.log.push(`end ${want.hash}`);
    }
    if (this.refuse.has(want.hash)) throw new ApiError(404, 'not_found', 'no such block in this namespace');
    const bytes = this.table.get(want.hash);
    if (!bytes) throw new Error('no such block');
    return bytes;
  }
  /** Fetches that started while `hash` was being fetched. */
  startsDuring(hash: BlockHash): string[] {
    const from = this.log.indexOf(`start ${hash}`);
    const to = this.log.indexOf(`end ${hash}`);
    return this.log.slice(from + 1, to).filter((line) => line.startsWith('start'));
  }
}

describe('priority fetch (BlockScheduler.prioritise)', () => {
  it('starts an urgent block at once past the caps, while the source’s background fetches step aside without counting as failures', async () => {
    const table = blocks(40);
    const hashes = [...table.keys()];
    const server = new TracedSource('server', 'server', table, 2, 30);
    const store = new MemoryBlockStore();
    const failures: BlockHash[] = [];
    const stored: BlockHash[] = [];
    const scheduler = new BlockScheduler({
      store,
      sha256: nodeSha256,
      sources: () => [server],
      maxInFlight: 2,
      events: { failed: (want) => failures.push(want.hash), stored: (want) => stored.push(want.hash) },
    });
    scheduler.setWanted(wantsOf(hashes));
    await until(() => server.log.filter((line) => line.startsWith('start')).length === 2);
    const urgent = hashes[37];
    scheduler.prioritise(wantsOf([urgent]));
    // It started in the same turn, though both slots were taken.
    expect(server.log.at(-1)).toBe(`start ${urgent}`);
    await until(() => stored.includes(urgent));
    // The two background fetches were given up for it, and nothing else started meanwhile.
    expect(server.aborted).toBe(2);
    expect(server.startsDuring(urgent)).toEqual([]);
    expect(stored.indexOf(urgent)).toBe(0);
    await scheduler.whenIdle();
    expect(store.blocks.size).toBe(40);
    expect(failures).toEqual([]);
  });

  it('asks a peer that holds the block before the server, even a busy one, and keeps the urgent order first-come', async () => {
    const table = blocks(30);
    const hashes = [...table.keys()];
    const peer = new TracedSource('peer', 'peer', table, 1, 20);
    const server = new TracedSource('server', 'server', table, 4, 20);
    const stored: BlockHash[] = [];
    const scheduler = new BlockScheduler({
      store: new MemoryBlockStore(),
      sha256: nodeSha256,
      sources: () => [peer, server],
      maxInFlight: 4,
      events: { stored: (want) => stored.push(want.hash) },
    });
    scheduler.setWanted(wantsOf(hashes));
    await until(() => peer.log.length > 0);
    scheduler.prioritise(wantsOf([hashes[20], hashes[10]]));
    await until(() => stored.includes(hashes[20]) && stored.includes(hashes[10]));
    expect(peer.log).toContain(`start ${hashes[20]}`);
    expect(peer.log).toContain(`start ${hashes[10]}`);
    expect(server.log).not.toContain(`start ${hashes[20]}`);
    expect(stored.slice(0, 2)).toEqual([hashes[20], hashes[10]]);
    await scheduler.whenIdle();
  });

  it('runs at most four urgent requests at once, in the order asked, however many are asked for', async () => {
    const table = blocks(40);
    const hashes = [...table.keys()];
    const server = new TracedSource('server', 'server', table, 2, 20);
    let most = 0;
    let now = 0;
    const stored: BlockHash[] = [];
    const counting: BlockSource = {
      id: server.id,
      kind: server.kind,
      maxInFlight: server.maxInFlight,
      canServe: (want) => server.canServe(want),
      fetchBlock: async (want, signal) => {
        now += 1;
        most = Math.max(most, now);
        try {
          return await server.fetchBlock(want, signal);
        } finally {
          now -= 1;
        }
      },
    };
    const scheduler = new BlockScheduler({ store: new MemoryBlockStore(), sha256: nodeSha256, sources: () => [counting], maxInFlight: 2, events: { stored: (want) => stored.push(want.hash) } });
    const urgent = hashes.slice(10, 30);
    scheduler.prioritise(wantsOf(urgent));
    await until(() => urgent.every((hash) => stored.includes(hash)));
    expect(most).toBe(4);
    expect(stored.slice(0, 20)).toEqual(urgent);
  });

  it('reads ahead with at most four requests in flight beside the reader’s, and a block read now that was asked ahead keeps its fetch', async () => {
    const table = blocks(12);
    const hashes = [...table.keys()];
    const server = new TracedSource('server', 'server', table, 2, 30);
    const stored: BlockHash[] = [];
    const scheduler = new BlockScheduler({ store: new MemoryBlockStore(), sha256: nodeSha256, sources: () => [server], maxInFlight: 2, events: { stored: (want) => stored.push(want.hash) } });
    scheduler.prioritise(wantsOf(hashes.slice(0, 8)), { ahead: true });
    const starts = () => server.log.filter((line) => line.startsWith('start'));
    expect(starts()).toEqual(hashes.slice(0, 4).map((hash) => `start ${hash}`));
    // The reader now reads block 1, already on its way: no second fetch, nothing given up;
    // it counts as the reader's now, so one more block is read ahead.
    scheduler.prioritise(wantsOf([hashes[1]]));
    expect(starts()).toEqual(hashes.slice(0, 5).map((hash) => `start ${hash}`));
    await until(() => hashes.slice(0, 8).every((hash) => stored.includes(hash)));
    expect(server.aborted).toBe(0);
    expect(starts()).toHaveLength(8);
  });

  it('a seek’s block starts at once and read-ahead of the old position steps aside until it is stored', async () => {
    const table = blocks(20);
    const hashes = [...table.keys()];
    const server = new TracedSource('server', 'server', table, 2, 40);
    const stored: BlockHash[] = [];
    const failures: BlockHash[] = [];
    const scheduler = new BlockScheduler({
      store: new MemoryBlockStore(),
      sha256: nodeSha256,
      sources: () => [server],
      maxInFlight: 2,
      events: { stored: (want) => stored.push(want.hash), failed: (want) => failures.push(want.hash) },
    });
    scheduler.prioritise(wantsOf(hashes.slice(0, 8)), { ahead: true });
    await until(() => server.log.filter((line) => line.startsWith('start')).length === 4);
    const seek = hashes[15];
    scheduler.prioritise(wantsOf([seek]));
    expect(server.log.at(-1)).toBe(`start ${seek}`);
    await until(() => stored.includes(seek));
    // The four reads ahead were given up for it (not as failures), and none started while it was fetched.
    expect(server.aborted).toBe(4);
    expect(server.startsDuring(seek)).toEqual([]);
    expect(stored[0]).toBe(seek);
    expect(failures).toEqual([]);
    // Then the read-ahead goes on.
    await until(() => hashes.slice(0, 8).every((hash) => stored.includes(hash)));
  });

  it('a reader that gives up frees its urgent slots at once: the next seeks start without waiting, and the old blocks go on as background', async () => {
    const table = blocks(12);
    const hashes = [...table.keys()];
    const peer = new TracedSource('peer', 'peer', table, 2, 60);
    const wanted: WantedBlock[] = [];
    const counting: BlockSource = { ...peer, id: peer.id, kind: peer.kind, maxInFlight: peer.maxInFlight, canServe: () => true, fetchBlock: (want, signal) => (wanted.push(want), peer.fetchBlock(want, signal)) };
    const stored: BlockHash[] = [];
    const scheduler = new BlockScheduler({ store: new MemoryBlockStore(), sha256: nodeSha256, sources: () => [counting], maxInFlight: 2, events: { stored: (want) => stored.push(want.hash) } });
    // Four readers' blocks from offsets fill the urgent slots; then their readers move on.
    const first = hashes.slice(0, 4).map((hash) => ({ ...wantsOf([hash])[0], from: 65_536 }));
    scheduler.prioritise(first);
    expect(wanted.map((want) => want.hash)).toEqual(hashes.slice(0, 4));
    scheduler.unprioritise(hashes.slice(0, 4));
    // A seek now starts at once: the given-up fetches no longer hold the urgent caps.
    scheduler.prioritise(wantsOf([hashes[10]]));
    expect(wanted.at(-1)?.hash).toBe(hashes[10]);
    await until(() => [...hashes.slice(0, 4), hashes[10]].every((hash) => stored.includes(hash)));
    // The old blocks stepped aside for the seek as background fetches do, and were asked for
    // again without the reader's offset (nobody reads from there now).
    const again = wanted.filter((want) => hashes.slice(0, 4).includes(want.hash)).slice(4);
    expect(again.length).toBeGreaterThan(0);
    expect(again.every((want) => want.from === undefined)).toBe(true);
  });

  it('goes back to the background order when the reader gives up', async () => {
    const table = blocks(10);
    const hashes = [...table.keys()];
    // No source claims the blocks: an urgent one waits, then is released.
    let claims = false;
    const peer = new TracedSource('peer', 'peer', table, 2, 5, () => claims);
    const scheduler = new BlockScheduler({ store: new MemoryBlockStore(), sha256: nodeSha256, sources: () => [peer], maxInFlight: 2, events: {} });
    scheduler.setWanted(wantsOf(hashes));
    scheduler.prioritise(wantsOf([hashes[9]]));
    scheduler.unprioritise([hashes[9]]);
    claims = true;
    scheduler.wake();
    await scheduler.whenIdle();
    const starts = peer.log.filter((line) => line.startsWith('start'));
    expect(starts).toHaveLength(10);
    expect(starts.at(-1)).toBe(`start ${hashes[9]}`);
  });
});


describe('NamespaceSync.fetchBlocksNow', () => {
  async function engineWith(table: Map<BlockHash, Uint8Array>, refuse: Set<BlockHash> = new Set()) {
    const hashes = [...table.keys()];
    const server = new TracedSource('server', 'server', table, 1, 40, () => true, refuse);
    const store = new MemoryBlockStore();
    const engine = new NamespaceSync({
      ns: NS,
      journal: onePageJournal({
        entries: [{ sjid: 1, path: 'big.bin', size: hashes.length * 64, mtime: 1, blocks: hashes, deleted: false }],
        cursor: 1,
        more: false,
      } as unknown as JournalPage),
      state: new MemoryStateStore(),
      blocks: store,
      sha256: nodeSha256,
      sources: () => [server],
    });
    await engine.start();
    return { engine, server, store, hashes };
  }

  it('resolves once the blocks are stored, fetched ahead of the file’s other blocks', async () => {
    const { engine, server, store, hashes } = await engineWith(blocks(20));
    await until(() => engine.file('big.bin') !== undefined);
    const wanted = wantsOf([hashes[15], hashes[16]]);
    await engine.fetchBlocksNow(wanted);
    expect(store.blocks.has(hashes[15]) && store.blocks.has(hashes[16])).toBe(true);
    const startedBefore = server.log.filter((line) => line.startsWith('start')).length;
    expect(startedBefore).toBeLessThan(8);
    // Already stored: resolves without a fetch.
    await engine.fetchBlocksNow(wanted);
    expect(server.log.filter((line) => line === `start ${hashes[15]}`)).toHaveLength(1);
    await engine.stop();
  });

  it('rejects with the reason when the server refuses a block, and on abort', async () => {
    const table = blocks(6);
    const refused = [...table.keys()][4];
    const { engine, hashes } = await engineWith(table, new Set([refused]));
    await until(() => engine.file('big.bin') !== undefined);
    await expect(engine.fetchBlocksNow(wantsOf([refused]))).rejects.toThrow(/could not fetch block .*no such block in this namespace/);
    const abort = new AbortController();
    const pending = engine.fetchBlocksNow(wantsOf([hashes[5]]), abort.signal);
    abort.abort(new Error('the reader went away'));
    await expect(pending).rejects.toThrow('the reader went away');
    await engine.stop();
  });
});
