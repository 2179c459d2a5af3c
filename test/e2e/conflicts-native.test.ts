import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TEMP_PREFIX } from '../../src/lan/folder/safe-path.ts';
import { DaemonPool } from '../support/lan-daemon.ts';
import { until } from '../support/until.ts';
import { E2eHarness, sha256, type TestServer } from './harness.ts';
import { createWorkspace, fileRowPaths, saveFileAndHash, uploadThroughPicker, waitForFileStatus, waitForUploadsDone } from './ui.ts';

/**
 * A browser and a native peer (`nearsync peer`, a real child process syncing a real folder)
 * replace the same file at once, both starting from the same version: whichever commits
 * second meets a conflict and keeps its version as a conflicted copy, so afterwards both
 * versions are live files, in the browser and in the folder.
 */

let harness: E2eHarness;
let server: TestServer;
let scratch: string;
const daemons = new DaemonPool();

beforeAll(async () => {
  harness = await E2eHarness.start();
  server = await harness.startServer();
  scratch = await mkdtemp(join(tmpdir(), 'nearsync-e2e-native-conflict-'));
});

afterAll(async () => {
  await daemons.stopAll();
  await harness?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const COPY = /^plan \(conflicted copy \d{4}-\d\d-\d\d \d{6} [^)]+\)\.txt$/;

describe('a browser and a native peer edit one file at once', () => {
  test('both versions survive as live files, in the browser and in the folder', { timeout: 180_000 }, async () => {
    const page = await (await harness.newBrowser()).newPage();
    page.on('pageerror', (error) => console.error('page error:', error.message));
    const { shareLink } = await createWorkspace(page, server.origin, 'Native conflict');
    const base = Buffer.from('base plan\n');
    await uploadThroughPicker(page, [await harness.writeTempFile('plan.txt', base)]);
    await waitForUploadsDone(page, ['plan.txt']);

    const dir = join(scratch, 'folder');
    const daemon = daemons.start({ server: server.origin, invite: shareLink, dir });
    await until(async () => (await readFile(join(dir, 'plan.txt'), 'utf8').catch(() => '')) === 'base plan\n', 60_000, 'plan.txt in the folder');

    // Both edits start from the base version: the browser takes its parent when the file is
    // added, the daemon when it scans its change, before either has heard of the other.
    const fromBrowser = Buffer.from('plan edited in the browser\n');
    const fromFolder = Buffer.from('plan edited in the folder, a longer line\n');
    const picked = await harness.writeTempFile('plan.txt', fromBrowser);
    await Promise.all([uploadThroughPicker(page, [picked]), writeFile(join(dir, 'plan.txt'), fromFolder)]);

    // Afterwards the folder holds plan.txt and exactly one conflicted copy, and the two hold
    // the two edits (either may have won).
    const edits = new Set([sha256(fromBrowser), sha256(fromFolder)]);
    // The daemon's temp files (a version being written) come and go; only settled files count.
    const folderFiles = async () => {
      const names = (await readdir(dir)).filter((name) => !name.startsWith(TEMP_PREFIX)).sort();
      const hashes = await Promise.all(names.map(async (name) => sha256(await readFile(join(dir, name)).catch(() => Buffer.from('(gone)')))));
      return { names, hashes };
    };
    await until(
      async () => {
        const { names, hashes } = await folderFiles();
        return names.length === 2 && names.includes('plan.txt') && names.some((name) => COPY.test(name)) && hashes.every((hash) => edits.has(hash)) && new Set(hashes).size === 2;
      },
      60_000,
      'both edits in the folder',
    ).catch(async (error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify(await folderFiles())}\n--- daemon output ---\n${daemon.output}`);
    });
    const { names, hashes } = await folderFiles();
    const copy = names.find((name) => COPY.test(name))!;
    const byName = new Map(names.map((name, i) => [name, hashes[i]]));

    // The browser shows the same two files with the same bytes.
    await waitForFileStatus(page, copy, 'synced', 60_000);
    expect(await fileRowPaths(page)).toEqual(['plan.txt', copy].sort());
    expect((await saveFileAndHash(page, 'plan.txt')).sha256).toBe(byName.get('plan.txt'));
    expect((await saveFileAndHash(page, copy)).sha256).toBe(byName.get(copy));
  });
});
