import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { GcPassReport } from '../../src/server/gc/block-collector.ts';
import { BACKEND_CASES, type BackendCase } from '../support/backend-cases.ts';
import { api, commitFile, createWorkspace, makeBlock, putBlock, startHarness, until, type Harness, type Member, type TestBlock } from './helpers.ts';

/**
 * Retention and block GC on a real server, per storage back end: what a pass removes and
 * keeps (checked in the store itself and through the API), the grace period, and commits and
 * uploads racing GC passes. Passes run on demand (`collectBlocks`); the timer is off.
 */

const harnesses: Harness[] = [];
afterEach(async () => {
  while (harnesses.length > 0) await harnesses.pop()!.stop();
});

async function harness(backendCase: BackendCase, settings: { historyMs: number; graceMs: number; retainedInMemory?: number }): Promise<Harness> {
  const h = await startHarness({ backends: backendCase, blockGc: { ...settings, intervalMs: 0 } });
  harnesses.push(h);
  return h;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** S3 lists LastModified to the second and the store counts the end of it: a block looks up to 1 s younger. */
const STORED_AT_SLACK_MS = 1_000;

async function collect(h: Harness): Promise<GcPassReport> {
  const result = await h.server.collectBlocks();
  if (result.status !== 'done') throw new Error(`pass ${result.status}`);
  return result;
}

async function stored(h: Harness): Promise<Set<string>> {
  return new Set((await h.storedState()).blocks);
}

function commitJson(path: string, blocks: TestBlock[]) {
  return { path, size: blocks.reduce((n, b) => n + b.bytes.length, 0), mtime: 1_700_000_000_000, blocks: blocks.map((b) => b.hash) };
}

async function deletePath(h: Harness, m: Member, path: string): Promise<void> {
  const res = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: { path, size: 0, mtime: 0, blocks: [], deleted: true } });
  expect(res.status).toBe(200);
}

async function download(h: Harness, m: Member, block: TestBlock): Promise<number> {
  const res = await api(h.url, 'GET', `/api/v1/blocks/${block.hash}?ns=${m.ns}`, { token: m.token });
  if (res.status === 200) expect(Buffer.compare(res.body as Buffer, block.bytes)).toBe(0);
  return res.status;
}

describe.each(BACKEND_CASES)('block GC on $name', (backendCase) => {
  it('keeps live and retained blocks, collects unreferenced ones, and old versions and deleted files once past retention', async () => {
    const historyMs = 2_500;
    const h = await harness(backendCase, { historyMs, graceMs: 0 });
    const m = await createWorkspace(h.url);
    const other = await createWorkspace(h.url);
    const [live, v1, v2, deleted, orphan, shared] = [3000, 1000, 1200, 900, 700, 500].map(makeBlock);

    await commitFile(h.url, m, 'live.txt', [live]);
    await commitFile(h.url, m, 'doc.txt', [v1, shared]);
    await commitFile(h.url, m, 'doc.txt', [v2]); // v1 and shared: an old version now
    await commitFile(h.url, other, 'copy.txt', [shared]); // …but shared is live in another namespace
    await commitFile(h.url, m, 'gone.txt', [deleted]);
    await deletePath(h, m, 'gone.txt');
    await putBlock(h.url, m.token, orphan); // never committed
    const supersededAt = Date.now();
    await sleep(STORED_AT_SLACK_MS);

    const before = h.server.metrics();
    const first = await collect(h);
    expect(first.retainedOnDisk).toBe(false);
    expect(first.blocksCollected).toBe(1);
    expect(first.bytesCollected).toBe(700);
    let present = await stored(h);
    expect(present.has(orphan.hash)).toBe(false);
    for (const block of [live, v1, v2, deleted, shared]) expect(present.has(block.hash)).toBe(true);
    // Within retention, old versions and deleted files can still be read (and restored).
    expect(await download(h, m, v1)).toBe(200);
    expect(await download(h, m, deleted)).toBe(200);
    const deletedList = async () =>
      (await api(h.url, 'GET', `/api/v1/ns/${m.ns}/deleted`, { token: m.token })).body.files.map((f: { path: string }) => f.path);
    expect(await deletedList()).toEqual(['gone.txt']);
    const historySizes = async () =>
      (await api(h.url, 'GET', `/api/v1/ns/${m.ns}/history?path=doc.txt`, { token: m.token })).body.versions.map((v: { size: number }) => v.size);
    expect(await historySizes()).toEqual([1200, 1000 + 500]);

    await sleep(supersededAt + historyMs + 200 - Date.now());
    const second = await collect(h);
    expect(second.blocksCollected).toBe(2);
    expect(second.bytesCollected).toBe(1000 + 900);
    present = await stored(h);
    for (const block of [v1, deleted]) expect(present.has(block.hash)).toBe(false);
    for (const block of [live, v2, shared]) expect(present.has(block.hash)).toBe(true);
    expect(await download(h, m, v1)).toBe(404);
    expect(await download(h, m, live)).toBe(200);
    // Recently deleted and history list only what can still be restored.
    expect(await deletedList()).toEqual([]);
    expect(await historySizes()).toEqual([1200]);
    expect(await download(h, other, shared)).toBe(200);

    // The journal keeps every entry: a fresh reader still gets a gapless journal from 0.
    const page = await api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=0`, { token: m.token });
    expect(page.body.entries.map((e: { sjid: number }) => e.sjid)).toEqual([1, 2, 3, 4, 5]);

    // Restoring a collected version: the commit asks for the block again.
    const restore = commitJson('doc.txt', [v1, shared]);
    const need = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: restore });
    expect(need.status).toBe(409);
    expect(need.body.need).toEqual([v1.hash]);
    await putBlock(h.url, m.token, v1);
    expect((await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: restore })).status).toBe(200);

    // Counted on both metrics endpoints.
    const metrics = (await api(h.url, 'GET', '/api/v1/metrics')).body;
    expect(metrics.blocksCollected - before.blocksCollected).toBe(3);
    expect(metrics.blockBytesCollected - before.blockBytesCollected).toBe(700 + 1000 + 900);
    expect(metrics.blockGcPasses - before.blockGcPasses).toBe(2);
    const text = (await api(h.url, 'GET', '/metrics')).body.toString();
    expect(text).toContain(`nearsync_blocks_collected_total ${metrics.blocksCollected}`);
    expect(text).toContain(`nearsync_block_bytes_collected_total ${metrics.blockBytesCollected}`);
    expect(text).toContain(`nearsync_block_gc_passes_total ${metrics.blockGcPasses}`);
  });

  it('gives the same verdicts with the retained set moved to disk, and leaves no temp file behind', async () => {
    const h = await harness(backendCase, { historyMs: 60_000, graceMs: 0, retainedInMemory: 3 });
    const m = await createWorkspace(h.url);
    const live = [600, 601, 602, 603, 604, 605, 606].map(makeBlock);
    const orphans = [700, 701].map(makeBlock);
    for (const [i, block] of live.entries()) await commitFile(h.url, m, `f${i}`, [block]);
    for (const block of orphans) await putBlock(h.url, m.token, block);
    await sleep(STORED_AT_SLACK_MS);
    const spillDirs = async () => (await readdir(tmpdir())).filter((name) => name.startsWith('nearsync-gc-retained-')).length;
    const dirsBefore = await spillDirs();

    const pass = await collect(h);
    expect(pass.retainedOnDisk).toBe(true);
    expect(pass.blocksCollected).toBe(2);
    expect(pass.blocksKept).toBe(7);
    expect(await stored(h)).toEqual(new Set(live.map((block) => block.hash)));
    expect(await spillDirs()).toBe(dirsBefore);
  });

  it('never collects a block stored within the grace period, and with HISTORY_DAYS 0 keeps no old version', async () => {
    const h = await harness(backendCase, { historyMs: 0, graceMs: 2_000 });
    const m = await createWorkspace(h.url);
    const [old, current, orphan] = [800, 900, 1000].map(makeBlock);
    await commitFile(h.url, m, 'f', [old]);
    await commitFile(h.url, m, 'f', [current]);
    await putBlock(h.url, m.token, orphan);
    const uploadedAt = Date.now();

    const early = await collect(h);
    expect(early.blocksCollected).toBe(0);
    expect(early.blocksKept).toBe(3);
    expect(await stored(h)).toEqual(new Set([old.hash, current.hash, orphan.hash]));

    await sleep(uploadedAt + 2_000 + STORED_AT_SLACK_MS + 300 - Date.now());
    const late = await collect(h);
    expect(late.blocksCollected).toBe(2);
    expect(await stored(h)).toEqual(new Set([current.hash]));
    expect(await download(h, m, current)).toBe(200);
  });

  it('never lets a commit land naming a block a pass removes: each is 200 with its blocks kept, or 409 need_blocks', async () => {
    const graceMs = 1_000;
    const h = await harness(backendCase, { historyMs: 0, graceMs });
    const m = await createWorkspace(h.url);
    // A pool of blocks that are garbage at first (committed, then deleted): the commits below
    // bring them back one by one while passes are removing them.
    const pool = Array.from({ length: 240 }, (_, i) => makeBlock(200 + i));
    const garbage = pool.map((block, i) => ({ path: `old/${i}`, size: block.bytes.length, mtime: 1, blocks: [block.hash] }));
    for (const block of pool) await putBlock(h.url, m.token, block);
    for (let i = 0; i < garbage.length; i += 80) {
      const res = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commits`, { token: m.token, json: { commits: garbage.slice(i, i + 80) } });
      expect(res.status).toBe(200);
      const deletions = garbage.slice(i, i + 80).map((c) => ({ path: c.path, size: 0, mtime: 1, blocks: [], deleted: true }));
      expect((await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commits`, { token: m.token, json: { commits: deletions } })).status).toBe(200);
    }
    // Past the grace, the pool is fair game: only the ordering of commits and passes keeps a
    // block a commit names.
    await sleep(graceMs + STORED_AT_SLACK_MS + 100);

    const promised = new Map<string, TestBlock[]>();
    const outcomes = { ok: 0, need: 0 };
    let racing = true;
    const passes: number[] = [];
    const gcLoop = (async () => {
      while (racing) passes.push((await collect(h)).blocksCollected);
    })();

    const pick = () => pool[Math.floor(Math.random() * pool.length)];
    // Long enough for many passes and for re-uploaded blocks to leave the grace again.
    const raceUntil = Date.now() + 3 * graceMs;
    const racing_ = () => Date.now() < raceUntil || passes.length < 5;
    const committer = async (worker: number) => {
      // At most 40 rounds each once enough passes ran: the check below reads every block back.
      for (let i = 0; racing_() && (i < 40 || passes.length < 5); i++) {
        await sleep(10);
        // Pool blocks (maybe removed by now: the client thinks they are stored) and a fresh upload.
        const fresh = makeBlock(300 + worker);
        await putBlock(h.url, m.token, fresh);
        const files = worker % 2 === 0 ? [[pick(), pick(), fresh]] : [[pick(), fresh], [pick()], [pick(), pick()]];
        const commits = files.map((blocks, f) => commitJson(`w${worker}/${i}/${f}`, blocks));
        const single = commits.length === 1;
        const byHash = new Map(files.flat().map((b) => [b.hash as string, b]));
        // As a client does: upload what a 409 names, and commit again.
        for (let attempt = 0; attempt < 10; attempt++) {
          const res = await api(h.url, 'POST', single ? `/api/v1/ns/${m.ns}/commit` : `/api/v1/ns/${m.ns}/commits`, {
            token: m.token,
            json: single ? commits[0] : { commits },
          });
          if (res.status === 200) {
            outcomes.ok++;
            files.forEach((blocks, f) => promised.set(`w${worker}/${i}/${f}`, blocks));
            break;
          }
          expect(res.status).toBe(409);
          expect(res.body.error).toBe('need_blocks');
          outcomes.need++;
          for (const hash of res.body.need as string[]) await putBlock(h.url, m.token, byHash.get(hash)!);
        }
      }
    };
    // Churn: pool blocks become live and garbage again while everything runs.
    const churn = async () => {
      for (let i = 0; racing_(); i++) {
        const block = pick();
        await putBlock(h.url, m.token, block);
        const res = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: commitJson('churn', [block]) });
        if (res.status === 200) await deletePath(h, m, 'churn');
      }
    };
    await Promise.all([committer(0), committer(1), committer(2), committer(3), churn()]);
    racing = false;
    await gcLoop;

    expect(outcomes.ok).toBeGreaterThan(0);
    expect(passes.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    // Every promised block is still there, through the API and in the store; and stays so.
    const check = async () => {
      const present = await stored(h);
      const blocks = new Map<string, { path: string; block: TestBlock }>();
      for (const [path, named] of promised) for (const block of named) blocks.set(block.hash, { path, block });
      for (const { path, block } of blocks.values()) {
        expect(present.has(block.hash), `${path}: ${block.hash}`).toBe(true);
        expect(await download(h, m, block)).toBe(200);
      }
    };
    await check();
    await collect(h);
    await check();
    console.log(`${backendCase.name}: ${outcomes.ok} commits 200, ${outcomes.need} need_blocks, ${passes.length} passes removed ${passes.reduce((a, b) => a + b, 0)}`);
  });
});

afterAll(async () => {
  while (harnesses.length > 0) await harnesses.pop()!.stop();
});

describe('block GC on a timer', () => {
  it('runs passes by itself every BLOCK_GC_INTERVAL_S, and stops with the server', async () => {
    const h = await startHarness({ blockGc: { historyMs: 0, graceMs: 0, intervalMs: 300 } });
    harnesses.push(h);
    const m = await createWorkspace(h.url);
    const orphan = makeBlock(1234);
    await putBlock(h.url, m.token, orphan);
    await until(() => h.server.metrics().blocksCollected === 1, 10_000, 'a timed pass to collect the orphan');
    expect(await stored(h)).toEqual(new Set());
    const passes = h.server.metrics().blockGcPasses;
    await until(() => h.server.metrics().blockGcPasses >= passes + 2, 10_000, 'more timed passes');
    await h.server.close();
    const atClose = h.server.metrics().blockGcPasses;
    await sleep(1_000);
    expect(h.server.metrics().blockGcPasses).toBe(atClose);
  });
});

describe('block GC on SQLite: the pass lock file in DATA_DIR', () => {
  it('skips a pass while another live process holds DATA_DIR/gc.lock, takes over an abandoned one, and removes its own', async () => {
    const h = await harness(BACKEND_CASES[0], { historyMs: 0, graceMs: 0 });
    const m = await createWorkspace(h.url);
    await putBlock(h.url, m.token, makeBlock(100));
    const lock = join(h.dataDir, 'gc.lock');
    // Another process on this host (a stand-in for a second server on the same data dir).
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    try {
      await writeFile(lock, JSON.stringify({ pid: other.pid, host: hostname(), at: Date.now() }));
      expect((await h.server.collectBlocks()).status).toBe('busy');
      expect(await stored(h)).toHaveProperty('size', 1);
      // A lock from another host is trusted for 6 hours, then taken over.
      await writeFile(lock, JSON.stringify({ pid: 1, host: 'elsewhere', at: Date.now() - 3_600_000 }));
      expect((await h.server.collectBlocks()).status).toBe('busy');
      await writeFile(lock, JSON.stringify({ pid: 1, host: 'elsewhere', at: Date.now() - 7 * 3_600_000 }));
      expect((await collect(h)).blocksCollected).toBe(1);
      expect(existsSync(lock)).toBe(false);
      // Left by a process that is gone: taken over at once.
      await putBlock(h.url, m.token, makeBlock(200));
      await writeFile(lock, JSON.stringify({ pid: other.pid, host: hostname(), at: Date.now() }));
      other.kill('SIGKILL');
      await new Promise((resolve) => other.once('exit', resolve));
      expect((await collect(h)).blocksCollected).toBe(1);
      expect(await readdir(h.dataDir)).not.toContain('gc.lock');
    } finally {
      other.kill('SIGKILL');
    }
  });
});
