import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SqliteStateStore } from '../../src/lan/store/sqlite-state-store.ts';
import { MAX_BLOCK_SIZE, type BlockHash } from '../../src/protocol/index.ts';
import { DaemonPool } from '../support/lan-daemon.ts';
import { tempFileBlocks } from '../support/temp-file-blocks.ts';
import { api, commitFile, createWorkspace, makeBlock, sha256, startHarness, until, type Harness, type Member, type TestBlock } from './helpers.ts';

/** The native peer (`nearsync peer`) as a child process against the real server on loopback. */

const SYNC_MS = 30_000;

let harness: Harness;
let scratch: string;
const daemons = new DaemonPool();

beforeAll(async () => {
  harness = await startHarness();
  scratch = await mkdtemp(join(tmpdir(), 'nearsync-lan-'));
});
afterEach(() => daemons.stopAll());
afterAll(async () => {
  await daemons.stopAll();
  await harness?.stop();
  await rm(scratch, { recursive: true, force: true });
});

async function folder(name: string): Promise<string> {
  const dir = join(scratch, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

async function contentOf(path: string): Promise<string | null> {
  try {
    return sha256(await readFile(path));
  } catch {
    return null;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function liveJournal(member: Member): Promise<Map<string, string[]>> {
  const live = new Map<string, string[]>();
  for (let cursor = 0; ; ) {
    const page = await api(harness.url, 'GET', `/api/v1/ns/${member.ns}/journal?cursor=${cursor}&limit=1000`, { token: member.token });
    for (const entry of page.body.entries) {
      if (entry.deleted) live.delete(entry.path);
      else live.set(entry.path, entry.blocks);
    }
    cursor = page.body.cursor;
    if (!page.body.more) return live;
  }
}

describe('nearsync peer: folder sync through the server', () => {
  it('syncs a folder both ways: new files, edits, renames, deletes', async () => {
    const member = await createWorkspace(harness.url, 'lan daemon');
    const dirA = await folder('two-way/a');
    const dirB = await folder('two-way/b');
    const big = randomBytes(9 * 1024 * 1024 + 7);
    await mkdir(join(dirA, 'docs'));
    await writeFile(join(dirA, 'docs/big.bin'), big);
    await writeFile(join(dirA, 'note.txt'), 'first version\n');

    const a = daemons.start({ server: harness.url, invite: member.inviteUrl, dir: dirA });
    await a.waitFor(/uploaded docs\/big\.bin/);
    await a.waitFor(/uploaded note\.txt/);
    const b = daemons.start({ server: harness.url, invite: member.inviteUrl, dir: dirB });
    await until(async () => (await contentOf(join(dirB, 'docs/big.bin'))) === sha256(big), SYNC_MS, 'big.bin at B');
    // Written after big.bin (entries in journal order), so it may still be on its way.
    await until(async () => (await readFile(join(dirB, 'note.txt'), 'utf8').catch(() => '')) === 'first version\n', SYNC_MS, 'note.txt at B');
    const live = await liveJournal(member);
    expect([...live.keys()].sort()).toEqual(['docs/big.bin', 'note.txt']);
    expect(live.get('docs/big.bin')).toHaveLength(3);

    // The token is kept, readable by the owner only; the state dir is the folder's sibling.
    expect((await stat(`${dirA}.nearsync`)).mode & 0o777).toBe(0o700);
    expect((await stat(`${dirA}.nearsync/member.json`)).mode & 0o777).toBe(0o600);

    // Edit at A.
    await writeFile(join(dirA, 'note.txt'), 'second version, longer\n');
    await until(async () => (await readFile(join(dirB, 'note.txt'), 'utf8').catch(() => '')) === 'second version, longer\n', SYNC_MS, 'edit at B');

    // Rename at A: the blocks are not sent again.
    const receivedBefore = harness.server.metrics().blockBytesReceived;
    await rename(join(dirA, 'docs/big.bin'), join(dirA, 'moved.bin'));
    await until(async () => (await contentOf(join(dirB, 'moved.bin'))) === sha256(big) && !(await exists(join(dirB, 'docs/big.bin'))), SYNC_MS, 'rename at B');
    expect(harness.server.metrics().blockBytesReceived).toBe(receivedBefore);
    expect(await exists(join(dirB, 'docs'))).toBe(false);

    // B's own change reaches A.
    await writeFile(join(dirB, 'from-b.txt'), 'written at B\n');
    await until(async () => (await readFile(join(dirA, 'from-b.txt'), 'utf8').catch(() => '')) === 'written at B\n', SYNC_MS, 'B to A');

    // Delete at A.
    await rm(join(dirA, 'note.txt'));
    await until(async () => !(await exists(join(dirB, 'note.txt'))), SYNC_MS, 'delete at B');
    expect([...(await liveJournal(member)).keys()].sort()).toEqual(['from-b.txt', 'moved.bin']);

    // A daemon that writes a file does not upload it back; nothing but the state was synced.
    expect(b.output).not.toMatch(/uploaded moved\.bin|uploaded note\.txt/);
    expect((await readdir(dirB)).sort()).toEqual(['from-b.txt', 'moved.bin']);
    expect(await b.stop()).toBe(0);
    expect(b.output).toMatch(/SIGTERM: stopping\nstopped/);

    // A restart reuses the stored token (no invite needed) and finds nothing to do.
    const again = daemons.start({ server: harness.url, dir: dirB });
    await again.waitFor(/watching/);
    expect(again.output).toMatch(/using workspace "lan daemon"/);
    expect(again.output).not.toMatch(/uploaded|wrote/);
    expect(a.output).not.toMatch(/failed/);
  });
});

/** The blocks of `blocks` a folder-mode daemon holds: staged in its state dir, or in a temp file in `dir`. */
async function heldBlocks(stateDir: string, dir: string, blocks: readonly TestBlock[]): Promise<Set<string>> {
  const held = new Set([...(await storedBlocks(stateDir)), ...(await tempFileBlocks(dir))]);
  return new Set(blocks.map((block) => block.hash).filter((hash) => held.has(hash)));
}

/** Block files in a daemon's state dir (`blocks/ab/<hash>`), not counting temp files. */
async function storedBlocks(stateDir: string): Promise<string[]> {
  const root = join(stateDir, 'blocks');
  const hashes: string[] = [];
  for (const prefix of await readdir(root).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{2}$/.test(prefix)) continue;
    for (const name of await readdir(join(root, prefix))) if (/^[0-9a-f]{64}$/.test(name)) hashes.push(name);
  }
  return hashes.sort();
}

describe('nearsync peer: restarts, conflicts, cache-only', () => {
  it('uploads a folder of many small files in batches, and deletes them in batches', { timeout: 300_000 }, async () => {
    const member = await createWorkspace(harness.url, 'lan batches');
    const dir = await folder('batches/a');
    const files = Array.from({ length: 120 }, (_, i) => ({ name: `small/${String(i).padStart(3, '0')}.txt`, bytes: randomBytes(100 + ((i * 37) % 3000)) }));
    await mkdir(join(dir, 'small'));
    for (const file of files) await writeFile(join(dir, file.name), file.bytes);
    const large = randomBytes(6 * 1024 * 1024); // two blocks above the batch limit: single PUTs
    await writeFile(join(dir, 'large.bin'), large);
    const requests = async () => {
      const text = (await api(harness.url, 'GET', '/metrics')).body.toString() as string;
      const count = (method: string, route: string) => {
        // Every 2xx answer (a PUT that stores a new block is 201).
        const prefix = `nearsync_http_requests_total{method="${method}",route="${route}",status="2`;
        return text.split('\n').filter((line) => line.startsWith(prefix)).reduce((n, line) => n + Number(line.split(' ')[1]), 0);
      };
      return {
        put: count('PUT', '/api/v1/blocks/:hash'),
        batch: count('POST', '/api/v1/blocks/batch'),
        commit: count('POST', '/api/v1/ns/:ns/commit'),
        commits: count('POST', '/api/v1/ns/:ns/commits'),
      };
    };
    const before = await requests();

    const daemon = daemons.start({ server: harness.url, invite: member.inviteUrl, dir });
    await until(async () => (await liveJournal(member)).size === 121, 4 * SYNC_MS, 'every file committed');
    const live = await liveJournal(member);
    for (const file of files) expect(live.get(file.name)).toEqual([sha256(file.bytes)]);
    const after = await requests();
    // 120 small blocks in batch uploads (4 MiB each at most), two single PUTs, and one batch commit.
    expect(after.put - before.put).toBe(2);
    expect(after.batch - before.batch).toBeGreaterThanOrEqual(1);
    expect(after.batch - before.batch).toBeLessThanOrEqual(3);
    expect(after.commits - before.commits).toBe(1);
    expect(after.commit - before.commit).toBe(0);

    await rm(join(dir, 'small'), { recursive: true });
    await until(async () => (await liveJournal(member)).size === 1, 4 * SYNC_MS, 'the deletions committed');
    expect((await requests()).commits - after.commits).toBe(1);
    expect(daemon.output).not.toMatch(/failed/);
  });

  it('resumes after SIGKILL mid-download without fetching a stored block again', async () => {
    // Paced downloads (8 MB/s) so the kill lands mid-transfer on any machine.
    const slow = await startHarness({ egressBytesPerSecond: 8_000_000 });
    try {
      const member = await createWorkspace(slow.url, 'resume');
      const blocks = Array.from({ length: 8 }, () => makeBlock(MAX_BLOCK_SIZE));
      await commitFile(slow.url, member, 'eight.bin', blocks);
      const dir = await folder('resume/b');
      const state = `${dir}.nearsync`;

      const first = daemons.start({ server: slow.url, invite: member.inviteUrl, dir });
      await until(async () => (await heldBlocks(state, dir, blocks)).size >= 2, SYNC_MS, 'two blocks stored');
      first.kill('SIGKILL');
      await first.exited;
      const storedAtKill = (await heldBlocks(state, dir, blocks)).size;
      expect(storedAtKill).toBeLessThan(8);
      expect(await exists(join(dir, 'eight.bin'))).toBe(false);
      // Let the server count the requests the kill cut short.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const before = slow.server.metrics().blockRequestsServed;

      const second = daemons.start({ server: slow.url, dir });
      const whole = sha256(Buffer.concat(blocks.map((block) => block.bytes)));
      await until(async () => (await contentOf(join(dir, 'eight.bin'))) === whole, SYNC_MS, 'eight.bin complete');
      expect(second.output).toMatch(/resuming at journal entry 1/);
      await until(() => slow.server.metrics().blockRequestsServed - before >= 8 - storedAtKill, SYNC_MS, 'requests counted');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(slow.server.metrics().blockRequestsServed - before).toBe(8 - storedAtKill);
      // The file holds every block now: the state dir keeps no second copy.
      await until(async () => (await storedBlocks(state)).length === 0, SYNC_MS, 'staged copies gone once the file is in place');
      await second.stop();
    } finally {
      await daemons.stopAll();
      await slow.stop();
    }
  });

  it('keeps both versions when a local edit meets a different remote version', async () => {
    const member = await createWorkspace(harness.url, 'conflict');
    const dirA = await folder('conflict/a');
    const dirB = await folder('conflict/b');
    await writeFile(join(dirA, 'plan.txt'), 'base\n');
    const a = daemons.start({ server: harness.url, invite: member.inviteUrl, dir: dirA });
    await a.waitFor(/uploaded plan\.txt/);
    const b = daemons.start({ server: harness.url, invite: member.inviteUrl, dir: dirB });
    await until(async () => (await readFile(join(dirB, 'plan.txt'), 'utf8').catch(() => '')) === 'base\n', SYNC_MS, 'base at B');
    await b.stop();

    // While B is away, both sides change the same file differently.
    await writeFile(join(dirB, 'plan.txt'), 'edited at B\n');
    await writeFile(join(dirA, 'plan.txt'), 'edited at A\n');
    await until(async () => (await liveJournal(member)).get('plan.txt')?.[0] === sha256(Buffer.from('edited at A\n')), SYNC_MS, 'A committed');

    const again = daemons.start({ server: harness.url, dir: dirB });
    await again.waitFor(/conflict on plan\.txt/);
    const visible = async () => (await readdir(dirB)).filter((name) => !name.startsWith('.nearsync-tmp-')).sort();
    await until(async () => (await visible()).length === 2 && (await readFile(join(dirB, 'plan.txt'), 'utf8').catch(() => '')) === 'edited at A\n', SYNC_MS, 'two files at B');
    const names = await visible();
    expect(names[0]).toMatch(/^plan \(conflicted copy \d{4}-\d\d-\d\d \d{6} [A-Za-z0-9._-]+\)\.txt$/);
    expect(names[1]).toBe('plan.txt');
    expect(await readFile(join(dirB, 'plan.txt'), 'utf8')).toBe('edited at A\n');
    expect(await readFile(join(dirB, names[0]), 'utf8')).toBe('edited at B\n');
    // The copy is a new file of the workspace: it reaches A, whose own version stays.
    await until(async () => (await readFile(join(dirA, names[0]), 'utf8').catch(() => '')) === 'edited at B\n', SYNC_MS, 'copy at A');
    expect(await readFile(join(dirA, 'plan.txt'), 'utf8')).toBe('edited at A\n');
    expect([...(await liveJournal(member)).keys()].sort()).toEqual([names[0], 'plan.txt']);
    // Each daemon's commits carry its device label (the host name), as does the copy's name.
    const history = await api(harness.url, 'GET', `/api/v1/ns/${member.ns}/history?path=plan.txt`, { token: member.token });
    expect(history.body.versions.map((v: { device: unknown }) => typeof v.device)).toEqual(['string', 'string']);
  });

  it('cache-only keeps every block of every live file and writes no files', async () => {
    const member = await createWorkspace(harness.url, 'cache box');
    const one = [makeBlock(MAX_BLOCK_SIZE), makeBlock(1000)];
    const two = [makeBlock(5000)];
    const gone = [makeBlock(700)];
    await commitFile(harness.url, member, 'one.bin', one);
    await commitFile(harness.url, member, 'sub/two.bin', two);
    await commitFile(harness.url, member, 'gone.bin', gone);
    await api(harness.url, 'POST', `/api/v1/ns/${member.ns}/commit`, {
      token: member.token,
      json: { path: 'gone.bin', size: 0, mtime: 1, blocks: [], deleted: true },
    });
    // A folder with a file in it: cache-only neither writes into it nor uploads from it.
    const dir = await folder('cache/box');
    await writeFile(join(dir, 'local.txt'), 'not for the workspace\n');

    const cache = daemons.start({ server: harness.url, invite: member.inviteUrl, dir, cacheOnly: true });
    await cache.waitFor(/in sync at journal entry 4/);
    expect(await storedBlocks(`${dir}.nearsync`)).toEqual([...one, ...two].map((block) => block.hash).sort());
    expect(await readdir(dir)).toEqual(['local.txt']);
    expect(cache.output).toMatch(/cache-only/);
    expect([...(await liveJournal(member)).keys()].sort()).toEqual(['one.bin', 'sub/two.bin']);
  });

  it('keeps no copy of the blocks its files hold (old versions too), and fetches them again when a file needs them once more', async () => {
    const member = await createWorkspace(harness.url, 'gc');
    const dir = await folder('gc');
    const stateDir = `${dir}.nearsync`;
    const daemon = daemons.start({
      server: harness.url,
      invite: member.inviteUrl,
      dir,
      env: { NEARSYNC_BLOCK_GC_MS: '300', NEARSYNC_BLOCK_GRACE_MS: '0' },
    });
    await daemon.waitFor(/watching/, SYNC_MS);
    const first = randomBytes(MAX_BLOCK_SIZE + 777); // two blocks
    await writeFile(join(dir, 'doc.bin'), first);
    await daemon.waitFor(/in sync at journal entry 1\b/, SYNC_MS);
    const firstBlocks = (await liveJournal(member)).get('doc.bin')!;
    expect(firstBlocks).toHaveLength(2);

    const second = randomBytes(MAX_BLOCK_SIZE + 999);
    await writeFile(join(dir, 'doc.bin'), second);
    await daemon.waitFor(/in sync at journal entry 2\b/, SYNC_MS);
    const secondBlocks = (await liveJournal(member)).get('doc.bin')!;
    const removed = async () => {
      const stored = await storedBlocks(stateDir);
      return firstBlocks.every((hash) => !stored.includes(hash));
    };
    await until(removed, SYNC_MS, 'the old version\'s blocks removed').catch(
      (error: Error) => {
        throw new Error(`${error.message}\n--- daemon ---\n${daemon.output}`);
      },
    );
    // The live version's blocks are served from doc.bin itself: no copy of them is kept either.
    await until(async () => (await storedBlocks(stateDir)).length === 0, SYNC_MS, 'the live version\'s staged copies gone');
    expect(secondBlocks).toHaveLength(2);
    expect(await contentOf(join(dir, 'doc.bin'))).toBe(sha256(second));

    // Another member commits the first version again under a new name: the daemon, which
    // forgot those blocks, fetches them again and writes the file whole.
    const again = [first.subarray(0, MAX_BLOCK_SIZE), first.subarray(MAX_BLOCK_SIZE)].map((bytes) => ({ bytes, hash: sha256(bytes) }));
    expect(again.map((block) => block.hash)).toEqual(firstBlocks);
    await commitFile(harness.url, member, 'again.bin', again);
    await until(async () => (await contentOf(join(dir, 'again.bin'))) === sha256(first), SYNC_MS, 'again.bin written').catch((error: Error) => {
      throw new Error(`${error.message}\n--- daemon ---\n${daemon.output}`);
    });
    expect(await daemon.stop()).toBe(0);

    // Its scan kept the CRC-32 of each block it cut from doc.bin (served unhashed after a
    // restart); the replaced version's went with it; again.bin, received, has none until served.
    const state = new SqliteStateStore(join(stateDir, 'state.db'));
    try {
      const crcs = state.blockCrcs();
      expect([...crcs.keys()].sort()).toEqual([...secondBlocks].sort());
      expect(secondBlocks.map((hash) => crcs.get(hash as BlockHash))).toEqual([crc32(second.subarray(0, MAX_BLOCK_SIZE)), crc32(second.subarray(MAX_BLOCK_SIZE))]);
    } finally {
      state.close();
    }
  });
});
