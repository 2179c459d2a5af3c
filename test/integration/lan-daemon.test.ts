import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DaemonPool } from '../support/lan-daemon.ts';
import { api, createWorkspace, sha256, startHarness, until, type Harness, type Member } from './helpers.ts';

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
    expect(await readFile(join(dirB, 'note.txt'), 'utf8')).toBe('first version\n');
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
