import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommitConflictError } from '../../src/engine/commit-conflict.ts';
import type { ConditionalCommits } from '../../src/engine/conflict-copies.ts';
import { NamespaceSync } from '../../src/engine/namespace-sync.ts';
import { ServerApi } from '../../src/engine/server-api.ts';
import { restoreVersion } from '../../src/engine/restore-version.ts';
import { ServerBlockSource } from '../../src/engine/server-source.ts';
import { uploadSmallFiles } from '../../src/engine/small-file-batch.ts';
import { uploadFile } from '../../src/engine/uploader.ts';
import { parseFilePath, type FilePath, type NamespaceId } from '../../src/protocol/index.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import { MemoryBlockStore, MemoryStateStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';

/**
 * Two devices running the engine against the real server edit one path at once: both
 * versions survive, the later one as a conflicted copy named after its device.
 */

const SYNC_TIMEOUT_MS = 15_000;
const NOW = new Date(2026, 11, 6, 9, 30, 15);

let server: RunningServer;
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'nearsync-conflicts-'));
  server = await startServer({ host: '127.0.0.1', port: 0, dataDir, staticDir: null, logger: silentLogger });
});
afterAll(async () => {
  await server?.close();
  await rm(dataDir, { recursive: true, force: true });
});

interface Device {
  label: string;
  api: ServerApi;
  blocks: MemoryBlockStore;
  state: MemoryStateStore;
  /** What this device knows of the workspace: the parent of its commits. */
  conditions: ConditionalCommits;
}

async function workspace(): Promise<{ ns: NamespaceId; a: Device; b: Device }> {
  const created = await new ServerApi(server.url).createWorkspace('conflicts');
  const invite = new URL(created.inviteUrl).hash.replace('#invite=', '');
  const joined = await new ServerApi(server.url).join(invite);
  const ns = created.namespaceId;
  const device = (token: string, label: string): Device => {
    const state = new MemoryStateStore();
    return {
      label,
      api: new ServerApi(server.url, token, undefined, label),
      blocks: new MemoryBlockStore(),
      state,
      conditions: {
        device: label,
        now: () => NOW,
        parentOf: async (path) => (await state.load(ns)).files.find((file) => file.path === path)?.sjid ?? 0,
      },
    };
  };
  return { ns, a: device(created.token, 'Ann laptop'), b: device(joined.token, 'Bob/desk') };
}

function upload(device: Device, ns: NamespaceId, path: string, text: string, conditional = true) {
  return uploadFile({
    ns,
    path: parseFilePath(path),
    mtime: 1_700_000_000_000,
    stream: new Blob([text]).stream(),
    api: device.api,
    blocks: device.blocks,
    sha256: nodeSha256,
    conditions: conditional ? device.conditions : undefined,
  });
}

/** Runs the device's engine until it has read the journal to the server's head and holds every block. */
async function catchUp(device: Device, ns: NamespaceId): Promise<NamespaceSync> {
  const sync = new NamespaceSync({
    ns,
    journal: device.api.journal(ns),
    state: device.state,
    blocks: device.blocks,
    sha256: nodeSha256,
    sources: () => [new ServerBlockSource(device.api)],
    longPollSeconds: 1,
  });
  await sync.start();
  const head = (await device.api.readJournal(ns, 0, { limit: 1000 })).entries.at(-1)?.sjid ?? 0;
  await until(() => sync.snapshot().syncedCursor >= head, SYNC_TIMEOUT_MS, `synced to ${head}`);
  return sync;
}

async function contentOf(device: Device, sync: NamespaceSync, path: string): Promise<string> {
  const file = sync.file(path);
  if (!file) throw new Error(`${path} is not live`);
  const parts = await Promise.all(file.blocks.map(async (hash) => (await device.blocks.getBlock(hash))!));
  return Buffer.concat(parts).toString();
}

async function livePaths(device: Device, ns: NamespaceId): Promise<string[]> {
  const sync = await catchUp(device, ns);
  await sync.stop();
  return (await device.state.load(ns)).files.map((file) => file.path).sort();
}

describe('conditional commits from the engine', () => {
  it('two devices edit the same file from the same version: both versions survive, the second as a conflicted copy', async () => {
    const { ns, a, b } = await workspace();
    await upload(a, ns, 'docs/plan.txt', 'base\n');
    for (const device of [a, b]) await (await catchUp(device, ns)).stop();

    const first = await upload(a, ns, 'docs/plan.txt', 'edited by Ann\n');
    expect(first).toMatchObject({ path: 'docs/plan.txt', conflicted: false, sjid: 2 });
    // B still knows entry 1 as the live version: its commit names it, and loses the race.
    const second = await upload(b, ns, 'docs/plan.txt', 'edited by Bob\n');
    const copy = 'docs/plan (conflicted copy 2026-12-06 093015 Bobdesk).txt';
    expect(second).toMatchObject({ path: copy, conflicted: true, sjid: 3 });

    for (const device of [a, b]) {
      const sync = await catchUp(device, ns);
      try {
        expect(await contentOf(device, sync, 'docs/plan.txt')).toBe('edited by Ann\n');
        expect(await contentOf(device, sync, copy)).toBe('edited by Bob\n');
      } finally {
        await sync.stop();
      }
    }
    // History shows who committed each version of the path; the copy has its own.
    const history = await a.api.history(ns, parseFilePath('docs/plan.txt'));
    expect(history.versions.map((v) => [v.sjid, v.device])).toEqual([
      [2, 'Ann laptop'],
      [1, 'Ann laptop'],
    ]);
    expect((await b.api.history(ns, parseFilePath(copy))).versions.map((v) => [v.sjid, v.device, v.deleted])).toEqual([[3, 'Bob/desk', false]]);
  });

  it('two devices racing on one path: exactly one takes it, the other keeps its version as a copy', async () => {
    const { ns, a, b } = await workspace();
    await upload(a, ns, 'race.txt', 'v1\n');
    for (const device of [a, b]) await (await catchUp(device, ns)).stop();
    const results = await Promise.all([upload(a, ns, 'race.txt', 'from Ann\n'), upload(b, ns, 'race.txt', 'from Bob\n')]);
    expect(results.filter((r) => r.conflicted)).toHaveLength(1);
    expect(results.filter((r) => !r.conflicted && r.path === 'race.txt')).toHaveLength(1);
    const loser = results.find((r) => r.conflicted)!;
    expect(loser.path).toMatch(/^race \(conflicted copy 2026-12-06 093015 (Ann laptop|Bobdesk)\)\.txt$/);
    expect(await livePaths(a, ns)).toEqual([loser.path, 'race.txt'].sort());
  });

  it('small-file batches: a new path created on two devices keeps both, and an identical version makes no copy', async () => {
    const { ns, a, b } = await workspace();
    const small = (path: string, text: string) => ({
      path: parseFilePath(path),
      mtime: 1_700_000_000_000,
      size: text.length,
      read: async () => new TextEncoder().encode(text),
    });
    const batch = (device: Device, files: ReturnType<typeof small>[], copies: [number, FilePath][]) =>
      uploadSmallFiles(files, {
        ns,
        api: device.api,
        blocks: device.blocks,
        sha256: nodeSha256,
        conditions: device.conditions,
        onConflictedCopy: (index, path) => copies.push([index, path]),
      });

    const aCopies: [number, FilePath][] = [];
    expect(await batch(a, [small('notes/new.md', 'Ann\n'), small('same.txt', 'same\n')], aCopies)).toEqual([1, 2]);
    expect(aCopies).toEqual([]);
    // B never read the journal: it believes both paths are new (parent 0).
    const bCopies: [number, FilePath][] = [];
    const sjids = await batch(b, [small('own.txt', 'mine\n'), small('notes/new.md', 'Bob\n'), small('same.txt', 'same\n')], bCopies);
    const copy = parseFilePath('notes/new (conflicted copy 2026-12-06 093015 Bobdesk).md');
    expect(bCopies).toEqual([[1, copy]]);
    // The identical file is already there: its sjid is the one Ann committed, nothing new.
    expect(sjids).toEqual([3, 4, 2]);
    expect(await livePaths(b, ns)).toEqual([copy, 'notes/new.md', 'own.txt', 'same.txt']);
    const sync = await catchUp(b, ns);
    try {
      expect(await contentOf(b, sync, 'notes/new.md')).toBe('Ann\n');
      expect(await contentOf(b, sync, copy)).toBe('Bob\n');
    } finally {
      await sync.stop();
    }
  });

  it('a deletion based on an old version does not remove the newer one', async () => {
    const { ns, a, b } = await workspace();
    await upload(a, ns, 'keep.txt', 'v1\n');
    for (const device of [a, b]) await (await catchUp(device, ns)).stop();
    await upload(a, ns, 'keep.txt', 'v2\n');
    const removal = b.api.commit(ns, { path: parseFilePath('keep.txt'), size: 0, mtime: 1, blocks: [], deleted: true, parent: 1 });
    const error = await removal.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommitConflictError);
    expect((error as CommitConflictError).current).toMatchObject({ sjid: 2, path: 'keep.txt', device: 'Ann laptop' });
    expect(await livePaths(b, ns)).toEqual(['keep.txt']);
  });

  it('without conditions an upload commits unconditionally, as before', async () => {
    const { ns, a, b } = await workspace();
    await upload(a, ns, 'x.txt', 'one\n');
    const second = await upload(b, ns, 'x.txt', 'two\n', false);
    expect(second).toMatchObject({ path: 'x.txt', conflicted: false, sjid: 2 });
    expect(hashOf(new TextEncoder().encode('two\n'))).toBe(second.blocks[0]);
  });

  it('restores an old version as an ordinary commit, and keeps it as a copy when the file changed meanwhile', async () => {
    const { ns, a, b } = await workspace();
    await upload(a, ns, 'report.txt', 'first draft\n');
    await (await catchUp(a, ns)).stop();
    await upload(a, ns, 'report.txt', 'second draft\n');
    const path = parseFilePath('report.txt');
    // B restores entry 1 from history: it knows entry 2 as live, so entry 2 is what it replaces.
    for (const device of [a, b]) await (await catchUp(device, ns)).stop();
    expect(await restoreVersion(ns, path, 1, b.api, b.blocks, b.conditions)).toEqual({ sjid: 3, path, conflicted: false });
    const history = await a.api.history(ns, path);
    expect(history.versions.map((v) => [v.sjid, v.blocks[0], v.device])).toEqual([
      [3, history.versions[2].blocks[0], 'Bob/desk'],
      [2, expect.any(String), 'Ann laptop'],
      [1, expect.any(String), 'Ann laptop'],
    ]);

    // A, not having read entry 3, restores entry 2: its restore becomes a conflicted copy.
    const kept = await restoreVersion(ns, path, 2, a.api, a.blocks, a.conditions);
    expect(kept).toMatchObject({ conflicted: true, path: 'report (conflicted copy 2026-12-06 093015 Ann laptop).txt' });
    const sync = await catchUp(a, ns);
    try {
      expect(await contentOf(a, sync, 'report.txt')).toBe('first draft\n');
      expect(await contentOf(a, sync, kept.path)).toBe('second draft\n');
    } finally {
      await sync.stop();
    }

    await expect(restoreVersion(ns, path, 99, a.api, a.blocks, a.conditions)).rejects.toThrow(/has no version 99/);
    await expect(restoreVersion(ns, parseFilePath('other.txt'), 1, a.api, a.blocks, a.conditions)).rejects.toThrow(/has no version 1/);
  });
});
