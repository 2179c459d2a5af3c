import { describe, expect, it } from 'vitest';
import { BlockAbsentError, BlockScheduler } from '../../src/engine/scheduler.ts';
import type { BlockSource, WantedBlock } from '../../src/engine/types.ts';
import type { BlockHash, NamespaceId } from '../../src/protocol/index.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const SMALL = 1000;
const BIG = 1024 * 1024;

function blocks(count: number, seed = 0): Map<BlockHash, Uint8Array> {
  const table = new Map<BlockHash, Uint8Array>();
  for (let i = 0; i < count; i++) {
    const bytes = new Uint8Array(32).map((_, j) => (i * 7 + j + seed * 131) & 255);
    new DataView(bytes.buffer).setUint32(0, i + seed * 1_000_000);
    table.set(hashOf(bytes), bytes);
  }
  return table;
}
const wants = (table: Map<BlockHash, Uint8Array>, sizeHint = SMALL, sjid = 1): WantedBlock[] =>
  [...table.keys()].map((hash) => ({ ns: NS, hash, sjid, sizeHint }));

type Behaviour = { lie?: Set<BlockHash>; omit?: Set<BlockHash>; fail?: boolean; holdMs?: number };

/** A source that serves from a table, singly or in batches, recording every call. */
class BatchingSource implements BlockSource {
  singles: BlockHash[] = [];
  batches: BlockHash[][] = [];
  inFlightNow = 0;
  maxSeen = 0;
  aborted = 0;
  constructor(
    readonly id: string,
    readonly kind: 'server' | 'peer',
    private readonly table: Map<BlockHash, Uint8Array>,
    readonly maxInFlight: number,
    readonly maxBatch: number | undefined,
    private readonly behaviour: Behaviour = {},
    private readonly serves: (want: WantedBlock) => boolean = () => true,
  ) {}
  canServe(want: WantedBlock): boolean {
    return this.serves(want);
  }
  async fetchBlock(want: WantedBlock, signal: AbortSignal): Promise<Uint8Array> {
    this.singles.push(want.hash);
    const got = await this.serve([want], signal);
    const bytes = got.get(want.hash);
    if (!bytes) throw new Error('no such block');
    return bytes;
  }
  async fetchBlocks(wanted: readonly WantedBlock[], signal: AbortSignal): Promise<Map<BlockHash, Uint8Array>> {
    this.batches.push(wanted.map((want) => want.hash));
    return this.serve(wanted, signal);
  }
  private async serve(wanted: readonly WantedBlock[], signal: AbortSignal): Promise<Map<BlockHash, Uint8Array>> {
    this.inFlightNow += 1;
    this.maxSeen = Math.max(this.maxSeen, this.inFlightNow);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, this.behaviour.holdMs ?? 2);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          this.aborted += 1;
          reject(signal.reason);
        });
      });
      if (this.behaviour.fail) throw new TypeError('connection reset');
      const out = new Map<BlockHash, Uint8Array>();
      for (const want of wanted) {
        const bytes = this.table.get(want.hash);
        if (!bytes || this.behaviour.omit?.has(want.hash)) continue;
        out.set(want.hash, this.behaviour.lie?.has(want.hash) ? bytes.map((b) => b ^ 1) : bytes);
      }
      return out;
    } finally {
      this.inFlightNow -= 1;
    }
  }
}

function scheduler(sources: () => BlockSource[], store = new MemoryBlockStore(), extra: Partial<ConstructorParameters<typeof BlockScheduler>[0]> = {}) {
  const failures: Array<[BlockHash, string, unknown]> = [];
  const penalised: string[] = [];
  const made = new BlockScheduler({
    store,
    sha256: nodeSha256,
    sources,
    maxInFlight: 8,
    events: {
      failed: (want, source, error) => failures.push([want.hash, source.id, error]),
      penalised: (source) => penalised.push(source.id),
    },
    ...extra,
  });
  return { scheduler: made, store, failures, penalised };
}

/** A store whose puts wait until released: blocks pile up between fetch and store. */
class GatedStore extends MemoryBlockStore {
  waiting: Array<() => void> = [];
  open = false;
  override async putBlock(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    if (!this.open) await new Promise<void>((resolve) => this.waiting.push(resolve));
    return super.putBlock(hash, bytes);
  }
  release(): void {
    this.open = true;
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}

describe('fetching while storing', () => {
  it('frees a server request slot when its answer arrives, and stops fetching once 32 MiB wait to be stored', async () => {
    const big = new Map<BlockHash, Uint8Array>();
    for (let i = 0; i < 12; i++) {
      const bytes = new Uint8Array(4 * 1024 * 1024).fill(i + 1);
      big.set(hashOf(bytes), bytes);
    }
    const server = new BatchingSource('server', 'server', big, 1, undefined);
    const store = new GatedStore();
    const { scheduler: s } = scheduler(() => [server], store, { maxInFlight: 1 });
    s.setWanted(wants(big, 4 * 1024 * 1024));
    // One slot, yet fetches go on while nothing is stored: 8 blocks of 4 MiB, then a pause.
    await until(async () => server.singles.length === 8, 5_000, 'eight fetches while the store is busy');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(server.singles.length).toBe(8);
    expect(store.blocks.size).toBe(0);
    expect(server.maxSeen).toBe(1);
    store.release();
    await s.whenIdle();
    expect(store.blocks.size).toBe(12);
    expect(server.singles.length).toBe(12);
  });
});

describe('looking at blocks again', () => {
  it('recheckBlocks looks at just the blocks named, and starts those a source now claims', async () => {
    const table = blocks(50, 3);
    const hashes = [...table.keys()];
    const claimed = new Set<BlockHash>();
    let looks = 0;
    const peer = new BatchingSource('peer', 'peer', table, 4, undefined, {}, (want) => {
      looks += 1;
      return claimed.has(want.hash);
    });
    const { scheduler: s, store } = scheduler(() => [peer]);
    s.setWanted(wants(table, BIG));
    expect(looks).toBe(50);
    // A HAVE for two blocks: only they are looked at, and both come from the peer.
    claimed.add(hashes[7]).add(hashes[42]);
    looks = 0;
    s.recheckBlocks([hashes[7], hashes[42], 'f'.repeat(64) as BlockHash]);
    expect(looks).toBe(2);
    await until(async () => store.blocks.size === 2, 5_000, 'the two claimed blocks');
    expect([...store.blocks.keys()].sort()).toEqual([hashes[7], hashes[42]].sort());
    // wake() still looks at every parked block.
    looks = 0;
    s.wake();
    expect(looks).toBe(48);
  });
});

describe('batched fetches', () => {
  it('asks for small blocks in batches of at most 256 that take one slot each, and for big blocks one by one', async () => {
    const small = blocks(600);
    const big = blocks(3, 1);
    const server = new BatchingSource('server', 'server', new Map([...small, ...big]), 2, 1000);
    const { scheduler: s, store } = scheduler(() => [server]);
    s.setWanted([...wants(big, BIG), ...wants(small)]);
    await s.whenIdle();
    expect(store.blocks.size).toBe(603);
    expect(server.singles.sort()).toEqual([...big.keys()].sort());
    expect(server.batches.flat().sort()).toEqual([...small.keys()].sort());
    expect(Math.max(...server.batches.map((batch) => batch.length))).toBe(256);
    expect(server.batches.length).toBeLessThanOrEqual(5);
    // Two slots: a batch in flight holds one, whatever its size.
    expect(server.maxSeen).toBeLessThanOrEqual(2);
    for (const [hash, bytes] of store.blocks) expect(hashOf(bytes)).toBe(hash);
  });

  it('keeps a batch within the byte budget and the source’s own batch limit', async () => {
    const small = blocks(100);
    const server = new BatchingSource('server', 'server', small, 4, 7);
    const { scheduler: s, store } = scheduler(() => [server], undefined, { maxBatchBytes: 5 * SMALL });
    s.setWanted(wants(small));
    await s.whenIdle();
    expect(store.blocks.size).toBe(100);
    expect(Math.max(...server.batches.map((batch) => batch.length))).toBe(5);
    const limited = new BatchingSource('server', 'server', small, 4, 7);
    const second = scheduler(() => [limited]);
    second.scheduler.setWanted(wants(small));
    await second.scheduler.whenIdle();
    expect(Math.max(...limited.batches.map((batch) => batch.length))).toBe(7);
  });

  it('stores the good blocks of a batch, penalises a peer for a wrong one inside it, and fetches that one from the server', async () => {
    const small = blocks(40);
    const hashes = [...small.keys()];
    const liar = new BatchingSource('liar', 'peer', small, 2, 16, { lie: new Set([hashes[3]]) });
    const server = new BatchingSource('server', 'server', small, 2, 1000);
    const { scheduler: s, store, penalised, failures } = scheduler(() => [liar, server], undefined, { maxInFlight: 1 });
    s.setWanted(wants(small));
    await s.whenIdle();
    expect(penalised).toEqual(['liar']);
    expect(s.isPenalised('liar')).toBe(true);
    expect(store.blocks.size).toBe(40);
    for (const [hash, bytes] of store.blocks) expect(hashOf(bytes)).toBe(hash);
    // The first batch went to the peer (preferred): all but the wrong block came from it, and
    // its slot was held until the hashes were checked, so it was never asked again.
    expect(liar.batches).toEqual([hashes.slice(0, 16)]);
    expect(failures.map(([hash, source]) => [hash, source])).toEqual([[hashes[3], 'liar']]);
    expect(server.batches.flat().sort()).toEqual([hashes[3], ...hashes.slice(16)].sort());
  });

  it('asks again elsewhere for a block a batch answer left out, and later from the same source', async () => {
    const small = blocks(10);
    const hashes = [...small.keys()];
    const peer = new BatchingSource('peer', 'peer', small, 1, 16, { omit: new Set([hashes[2], hashes[7]]) });
    const server = new BatchingSource('server', 'server', small, 1, 1000);
    const { scheduler: s, store, failures } = scheduler(() => [peer, server]);
    s.setWanted(wants(small));
    await s.whenIdle();
    expect(store.blocks.size).toBe(10);
    expect(failures.map(([hash, source, error]) => [hash, source, error instanceof BlockAbsentError])).toEqual([
      [hashes[2], 'peer', true],
      [hashes[7], 'peer', true],
    ]);
    expect(server.batches).toEqual([[hashes[2], hashes[7]]]);

    // With one source, the absent ones come again in its next round.
    const once = new Set([hashes[4]]);
    const only = new BatchingSource('server', 'server', small, 1, 1000, { omit: once });
    const second = scheduler(() => [only]);
    second.scheduler.setWanted(wants(small));
    await until(() => second.failures.length === 1);
    once.clear();
    await second.scheduler.whenIdle();
    expect(second.store.blocks.size).toBe(10);
    expect(only.singles).toEqual([hashes[4]]);
  });

  it('requeues every block of a batch that failed as a whole, and moves them to the next source', async () => {
    const small = blocks(20);
    const broken = new BatchingSource('broken', 'peer', small, 1, 16, { fail: true });
    const server = new BatchingSource('server', 'server', small, 1, 1000);
    const { scheduler: s, store, penalised } = scheduler(() => [broken, server]);
    s.setWanted(wants(small));
    await s.whenIdle();
    expect(store.blocks.size).toBe(20);
    expect(penalised).toEqual([]);
    // The peer is preferred even while busy: every block was asked of it once, in batches.
    expect(broken.batches.flat().sort()).toEqual([...small.keys()].sort());
    expect(server.batches.flat().sort()).toEqual([...small.keys()].sort());
  });

  it('aborts a batch half way once none of its blocks is wanted, and keeps one going for the blocks still wanted', async () => {
    const small = blocks(12);
    const hashes = [...small.keys()];
    const server = new BatchingSource('server', 'server', small, 1, 1000, { holdMs: 60 });
    const { scheduler: s, store } = scheduler(() => [server]);
    s.setWanted(wants(small));
    await until(() => server.inFlightNow === 1);
    expect(s.inFlight().size).toBe(12);
    s.removeWanted(hashes.slice(0, 4));
    await s.whenIdle();
    expect(server.aborted).toBe(0);
    expect([...store.blocks.keys()].sort()).toEqual(hashes.slice(4).sort());

    const again = new BatchingSource('server', 'server', small, 1, 1000, { holdMs: 5_000 });
    const second = scheduler(() => [again]);
    second.scheduler.setWanted(wants(small));
    await until(() => again.inFlightNow === 1);
    second.scheduler.removeWanted(hashes);
    await second.scheduler.whenIdle();
    expect(again.aborted).toBe(1);
    expect(second.store.blocks.size).toBe(0);
  });

  it('stops a batch on stop() and stores nothing after', async () => {
    const small = blocks(8);
    const server = new BatchingSource('server', 'server', small, 1, 1000, { holdMs: 5_000 });
    const { scheduler: s, store } = scheduler(() => [server]);
    s.setWanted(wants(small));
    await until(() => server.inFlightNow === 1);
    await s.stop();
    expect(server.aborted).toBe(1);
    expect(store.blocks.size).toBe(0);
  });

  it('lets a server fetch inside a batch yield: the block arrives all the same or is queued again, never failed', async () => {
    const small = blocks(4);
    const hashes = [...small.keys()];
    const server = new BatchingSource('server', 'server', small, 1, 1000, { holdMs: 30, omit: new Set([hashes[1]]) });
    const { scheduler: s, store, failures } = scheduler(() => [server]);
    s.setWanted(wants(small));
    await until(() => server.inFlightNow === 1);
    expect(s.yieldFetch(hashes[0], 'server')).toBe(true);
    expect(s.yieldFetch(hashes[1], 'server')).toBe(true);
    expect(s.yieldFetch(hashes[1], 'server')).toBe(false);
    await until(() => store.blocks.size === 3);
    expect(failures).toEqual([]);
    expect(s.idle).toBe(false);
    expect(store.blocks.has(hashes[1])).toBe(false);
    await s.stop();
  });
});

describe('incremental wanted list', () => {
  it('adds blocks behind those wanted already and removes queued ones without fetching them', async () => {
    const first = blocks(5);
    const later = blocks(5, 2);
    const all = new Map([...first, ...later]);
    const server = new BatchingSource('server', 'server', all, 1, undefined);
    const { scheduler: s, store } = scheduler(() => [server], undefined, { maxInFlight: 1 });
    s.addWanted(wants(first, BIG));
    s.addWanted([...wants(later, BIG), ...wants(first, BIG)]);
    const dropped = [...later.keys()].slice(0, 3);
    s.removeWanted(dropped);
    await s.whenIdle();
    expect(server.singles).toEqual([...first.keys(), ...[...later.keys()].slice(3)]);
    expect(store.blocks.size).toBe(7);
    // setWanted still replaces the whole list.
    s.setWanted(wants(later, BIG));
    await s.whenIdle();
    expect(store.blocks.size).toBe(10);
  });
});

describe('pump cost', () => {
  it('does not look at every waiting block on every completion (blocks waiting for a busy peer)', async () => {
    const count = 2000;
    const table = blocks(count);
    let looks = 0;
    const peer = new BatchingSource('peer', 'peer', table, 1, undefined, { holdMs: 0 }, () => {
      looks += 1;
      return true;
    });
    const server = new BatchingSource('server', 'server', table, 4, undefined);
    const { scheduler: s, store } = scheduler(() => [peer, server]);
    s.setWanted(wants(table, BIG));
    await s.whenIdle();
    expect(store.blocks.size).toBe(count);
    expect(server.singles).toEqual([]);
    // Scanning the waiting list per completion would be about count²/2 = 2 million looks.
    expect(looks).toBeLessThan(10 * count);
  });

  it('wakes parked blocks when sources change, and a zero-capacity claim holds blocks off the server until then', async () => {
    const table = blocks(600);
    let holding = true;
    const hold: BlockSource = {
      id: 'hold',
      kind: 'peer',
      maxInFlight: 0,
      canServe: () => holding,
      fetchBlock: () => Promise.reject(new Error('never')),
    };
    const server = new BatchingSource('server', 'server', table, 2, 1000);
    const { scheduler: s, store } = scheduler(() => [hold, server]);
    s.setWanted(wants(table));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(server.batches.length + server.singles.length).toBe(0);
    holding = false;
    s.wake();
    await s.whenIdle();
    expect(store.blocks.size).toBe(600);
    expect(server.batches.length).toBeLessThanOrEqual(4);
  });
});
