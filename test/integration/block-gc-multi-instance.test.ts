import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import type { BackendConfig } from '../../src/server/backends/index.ts';
import type { GcPassReport, GcPassResult } from '../../src/server/gc/block-collector.ts';
import { silentLogger } from '../../src/server/log.ts';
import { createTestSchema } from '../support/pg-test-db.ts';
import { startS3TestServer } from '../support/s3-test-server.ts';
import { api, createWorkspace, makeBlock, putBlock, type Member, type TestBlock } from './helpers.ts';

/**
 * Two server instances on one PostgreSQL schema and one block store (a shared DATA_DIR, or
 * one bucket), as behind a load balancer: one GC pass at a time across both, each block
 * removed once, and commits on either instance never landing on a block the other removes.
 */

const GRACE_MS = 1_000;
/** S3 lists LastModified to the second and the store counts the end of it: a block looks up to 1 s younger. */
const STORED_AT_SLACK_MS = 1_000;
const cleanups: Array<() => Promise<void>> = [];
const serverErrors: string[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
  serverErrors.length = 0;
});

interface Deployment {
  instances: RunningServer[];
  /** Hashes in the shared block store now. */
  stored(): Promise<Set<string>>;
}

const STORES = [
  {
    name: 'a shared DATA_DIR',
    async provision(): Promise<{ config: BackendConfig; dataDir: string; stored(): Promise<Set<string>> }> {
      const dataDir = await mkdtemp(join(tmpdir(), 'nearsync-gc-multi-'));
      cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
      const stored = async () => {
        const entries = await readdir(join(dataDir, 'blocks'), { recursive: true });
        return new Set(entries.map((path) => /([0-9a-f]{64})$/.exec(path)?.[1]).filter((hash): hash is string => hash !== undefined));
      };
      return { config: {}, dataDir, stored };
    },
  },
  {
    name: 'one S3 bucket',
    async provision(): Promise<{ config: BackendConfig; dataDir: string; stored(): Promise<Set<string>> }> {
      const s3 = await startS3TestServer();
      cleanups.push(() => s3.stop());
      const dataDir = await mkdtemp(join(tmpdir(), 'nearsync-gc-multi-'));
      cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
      const stored = async () => new Set((await s3.keys()).map((key) => key.slice(key.lastIndexOf('/') + 1)));
      return { config: { blockStore: s3.location(), s3: s3.settings }, dataDir, stored };
    },
  },
];

async function deploy(store: (typeof STORES)[number]): Promise<Deployment> {
  const schema = await createTestSchema('gcmulti');
  cleanups.push(() => schema.drop());
  const { config, dataDir, stored } = await store.provision();
  const start = () =>
    startServer({
      dataDir,
      // Internal errors are kept: the race must produce none.
      logger: { ...silentLogger, error: (msg: string, fields?: Record<string, unknown>) => serverErrors.push(`${msg} ${String(fields?.err)}`) },
      backends: { ...config, databaseUrl: schema.databaseUrl },
      blockGc: { historyMs: 0, graceMs: GRACE_MS, intervalMs: 0 },
    });
  // One after the other: the files store clears its temp directory when it opens.
  const a = await start();
  cleanups.push(() => a.close());
  const b = await start();
  cleanups.push(() => b.close());
  return { instances: [a, b], stored };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Commits each block as a file on `server`, then deletes the files: garbage once past the grace. */
async function makeGarbage(server: RunningServer, m: Member, blocks: TestBlock[]): Promise<void> {
  for (const block of blocks) await putBlock(server.url, m.token, block);
  for (let i = 0; i < blocks.length; i += 100) {
    const slice = blocks.slice(i, i + 100);
    const writes = slice.map((block, j) => ({ path: `g/${i + j}`, size: block.bytes.length, mtime: 1, blocks: [block.hash] }));
    const deletes = writes.map((w) => ({ path: w.path, size: 0, mtime: 1, blocks: [], deleted: true }));
    for (const commits of [writes, deletes]) {
      expect((await api(server.url, 'POST', `/api/v1/ns/${m.ns}/commits`, { token: m.token, json: { commits } })).status).toBe(200);
    }
  }
}

describe.each(STORES)('block GC on two PostgreSQL instances sharing $name', (store) => {
  it('runs one collector at a time: passes never overlap, each block is removed once', async () => {
    const { instances, stored } = await deploy(store);
    const [a] = instances;
    const m = await createWorkspace(a.url);
    const garbage = Array.from({ length: 300 }, (_, i) => makeBlock(100 + i));
    const live = makeBlock(5000);
    await makeGarbage(a, m, garbage);
    await putBlock(a.url, m.token, live);
    expect((await api(a.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: { path: 'keep', size: 5000, mtime: 1, blocks: [live.hash] } })).status).toBe(200);
    await sleep(GRACE_MS + STORED_AT_SLACK_MS + 200);

    const results: Array<{ instance: number; result: GcPassResult }> = [];
    for (let round = 0; round < 6; round++) {
      const both = await Promise.all(instances.map((server) => server.collectBlocks()));
      both.forEach((result, instance) => results.push({ instance, result }));
    }
    const done = results.filter((r): r is { instance: number; result: GcPassReport } => r.result.status === 'done');
    expect(results.filter((r) => r.result.status === 'busy').length).toBeGreaterThan(0);
    for (const x of done) {
      for (const y of done) {
        if (x === y) continue;
        const overlap = x.result.startedAt < y.result.endedAt && y.result.startedAt < x.result.endedAt;
        expect(overlap, `passes of instances ${x.instance} and ${y.instance} overlapped`).toBe(false);
      }
    }
    expect(done.reduce((n, r) => n + r.result.blocksCollected, 0)).toBe(300);
    const counted = instances.map((server) => server.metrics());
    expect(counted[0].blocksCollected + counted[1].blocksCollected).toBe(300);
    expect(counted[0].blockBytesCollected + counted[1].blockBytesCollected).toBe(garbage.reduce((n, b) => n + b.bytes.length, 0));
    expect(await stored()).toEqual(new Set([live.hash]));
  });

  it('stores an upload on an instance that still had the block cached when the other removed it', async () => {
    const { instances, stored } = await deploy(store);
    const [a, b] = instances;
    const m = await createWorkspace(a.url);
    const block = makeBlock(4321);
    await makeGarbage(a, m, [block]);
    await sleep(GRACE_MS + STORED_AT_SLACK_MS + 100);
    // B learns the block is stored (and caches its size)…
    expect((await api(b.url, 'POST', '/api/v1/blocks/missing', { token: m.token, json: { hashes: [block.hash] } })).body).toEqual({ missing: [] });
    // …A removes it…
    const pass = await a.collectBlocks();
    expect(pass.status === 'done' && pass.blocksCollected).toBe(1);
    expect((await stored()).has(block.hash)).toBe(false);
    // …and an upload through B really stores it again, so a commit through B goes through.
    expect(await putBlock(b.url, m.token, block)).toBe(201);
    expect((await stored()).has(block.hash)).toBe(true);
    const res = await api(b.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: { path: 'back', size: 4321, mtime: 1, blocks: [block.hash] } });
    expect(res.status).toBe(200);
  });

  it('never lets a commit on one instance land on a block the other removes', async () => {
    const { instances, stored } = await deploy(store);
    const m = await createWorkspace(instances[0].url);
    const pool = Array.from({ length: 200 }, (_, i) => makeBlock(300 + i));
    await makeGarbage(instances[0], m, pool);
    await sleep(GRACE_MS + STORED_AT_SLACK_MS + 100);

    const raceUntil = Date.now() + 3 * GRACE_MS;
    let passes = 0;
    let removed = 0;
    const racing = () => Date.now() < raceUntil || passes < 6;
    // Both instances collect, taking turns through the pass lock.
    const gcLoop = async (server: RunningServer) => {
      while (racing()) {
        const result = await server.collectBlocks();
        if (result.status === 'done') {
          passes++;
          removed += result.blocksCollected;
        } else await sleep(5);
      }
    };
    const promised = new Map<string, TestBlock[]>();
    const outcomes = { ok: 0, need: 0 };
    const pick = () => pool[Math.floor(Math.random() * pool.length)];
    const committer = async (worker: number) => {
      // Each worker commits through one instance; the sizes it cached may be of blocks the
      // other instance removes.
      const server = instances[worker % 2];
      for (let i = 0; racing(); i++) {
        await sleep(10);
        const blocks = [pick(), pick()];
        const body = { path: `w${worker}/${i}`, size: blocks[0].bytes.length + blocks[1].bytes.length, mtime: 1, blocks: blocks.map((b) => b.hash) };
        for (let attempt = 0; attempt < 10; attempt++) {
          const res = await api(server.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: body });
          if (res.status === 200) {
            outcomes.ok++;
            promised.set(body.path, blocks);
            break;
          }
          expect(res.status).toBe(409);
          expect(res.body.error).toBe('need_blocks');
          outcomes.need++;
          for (const hash of res.body.need as string[]) await putBlock(server.url, m.token, blocks.find((b) => b.hash === hash)!);
        }
      }
    };
    await Promise.all([gcLoop(instances[0]), gcLoop(instances[1]), committer(0), committer(1), committer(2), committer(3)]);

    expect(outcomes.ok).toBeGreaterThan(0);
    expect(removed).toBeGreaterThan(0);
    const present = await stored();
    for (const [path, blocks] of promised) {
      for (const block of blocks) {
        expect(present.has(block.hash), `${path}: ${block.hash}`).toBe(true);
        for (const server of instances) {
          const res = await api(server.url, 'GET', `/api/v1/blocks/${block.hash}?ns=${m.ns}`, { token: m.token });
          expect(res.status).toBe(200);
        }
      }
    }
    expect(serverErrors).toEqual([]);
    console.log(`${store.name}: ${outcomes.ok} commits 200, ${outcomes.need} need_blocks, ${passes} passes removed ${removed}`);
  });
});
