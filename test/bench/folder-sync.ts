import { createHash } from 'node:crypto';
import type { Page } from 'playwright-core';
import { ServerApi } from '../../src/engine/server-api.ts';
import type { E2eHarness } from '../e2e/harness.ts';
import { manyFilesBytes, manyFilesPath, printableBytes, seedManyFiles } from '../e2e/support/seed-many-files.ts';
import { commitBytes } from '../e2e/support/seed-workspace.ts';
import { joinWithLink } from '../e2e/ui.ts';
import { RssSampler, chromiumRss, markerSwitch, rssColumns } from './chromium-rss.ts';
import type { BenchRow } from './report.ts';

/**
 * Folder sync, journal → folder: a workspace of many small files (0.2–3 KiB) and a few large
 * ones, fully synced into a browser, is written into an origin-private folder by "Sync to a
 * folder…", timed from the click until the panel counts every file written. The baseline is the
 * same bytes written with the same API (getDirectoryHandle / getFileHandle / createWritable /
 * write / close, one file after another) in a bare loop in the same page, run before and after
 * (over the first `bareFiles` small files when given: compared per file). Then the folder is
 * scanned again with nothing changed (a page focus asks for it), and 100 files are edited in
 * the folder and timed until folder sync has committed them, and one file another device
 * commits is timed until it is written into the folder; each with the growth of Chromium's
 * RSS per process over the idle figure just before.
 */

/** Files edited in the folder for the touched row. */
const TOUCHED = 100;
/** The file another device adds for the remote-entry row. */
const REMOTE_PATH = 'from-another-device/new.txt';

const LARGE_FILES = 3;
const LARGE_BYTES = 8 * 1024 * 1024 + 12_345;
const SYNCED_FOLDER = 'bench-folder-sync';

/** Large file k's bytes: the small files' generator at another size, so the page can make them too. */
function largeBytes(k: number): Buffer {
  return printableBytes(k + 1_000_003, LARGE_BYTES);
}

const largePath = (k: number) => `large/movie-${k}.bin`;

/** The bare loop: the same files, bytes made in the page before the clock starts, written one by one. */
async function bareLoopSeconds(page: Page, folder: string, files: number): Promise<number> {
  return page.evaluate(
    async ({ folder, files, largeFiles, largeSize }) => {
      // The seeding's generators, again (page code cannot import them).
      const fill = (size: number, seed: number) => {
        const bytes = new Uint8Array(size);
        let state = seed * 0x9e3779b1;
        for (let i = 0; i < size; i++) {
          state = (state ^ (state << 13)) >>> 0;
          state = (state ^ (state >>> 17)) >>> 0;
          state = (state ^ (state << 5)) >>> 0;
          bytes[i] = 32 + (state % 95);
        }
        return bytes;
      };
      const pathOf = (index: number) => `project-${index % 10}/part-${Math.floor(index / 10) % 10}/file-${String(index).padStart(6, '0')}.txt`;
      const items: { path: string; bytes: Uint8Array }[] = [];
      for (let index = 0; index < files; index++) items.push({ path: pathOf(index), bytes: fill(200 + ((index * 2654435761) % 2873), index + 1) });
      for (let k = 0; k < largeFiles; k++) items.push({ path: `large/movie-${k}.bin`, bytes: fill(largeSize, k + 1_000_003) });
      const opfs = await navigator.storage.getDirectory();
      await opfs.removeEntry(folder, { recursive: true }).catch(() => undefined);
      const root = await opfs.getDirectoryHandle(folder, { create: true });
      const began = performance.now();
      const dirs = new Map<string, FileSystemDirectoryHandle>([['', root]]);
      for (const { path, bytes } of items) {
        const slash = path.lastIndexOf('/');
        const parentPath = path.slice(0, slash);
        let dir = dirs.get(parentPath);
        if (!dir) {
          dir = root;
          for (const part of parentPath.split('/')) dir = await dir.getDirectoryHandle(part, { create: true });
          dirs.set(parentPath, dir);
        }
        const writable = await (await dir.getFileHandle(path.slice(slash + 1), { create: true })).createWritable();
        await writable.write(bytes as Uint8Array<ArrayBuffer>);
        await writable.close();
      }
      return (performance.now() - began) / 1000;
    },
    { folder, files, largeFiles: LARGE_FILES, largeSize: LARGE_BYTES },
  );
}

/** SHA-256 of some files of a folder in OPFS (to check both writers wrote the same bytes). */
async function folderHashes(page: Page, folder: string, paths: string[]): Promise<string[]> {
  return page.evaluate(
    async ({ folder, paths }) => {
      const root = await (await navigator.storage.getDirectory()).getDirectoryHandle(folder);
      const out: string[] = [];
      for (const path of paths) {
        let dir = root;
        const parts = path.split('/');
        for (const part of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(part);
        const bytes = await (await (await dir.getFileHandle(parts[parts.length - 1])).getFile()).arrayBuffer();
        out.push([...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join(''));
      }
      return out;
    },
    { folder, paths },
  );
}

/** The panel's counts (its data attributes). */
async function panelCount(page: Page, name: 'written' | 'uploaded' | 'lastScan'): Promise<number> {
  return page.evaluate((key) => Number(document.querySelector<HTMLElement>('[data-testid="folder-sync"]')?.dataset[key] ?? 0), name);
}

/** Appends a line to each of `paths` in the synced folder, as an editor would. */
async function touchFiles(page: Page, folder: string, paths: string[]): Promise<void> {
  await page.evaluate(
    async ({ folder, paths }) => {
      const root = await (await navigator.storage.getDirectory()).getDirectoryHandle(folder);
      for (const path of paths) {
        let dir = root;
        const parts = path.split('/');
        for (const part of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(part);
        const handle = await dir.getFileHandle(parts[parts.length - 1]);
        const size = (await handle.getFile()).size;
        const writable = await handle.createWritable({ keepExistingData: true });
        await writable.write({ type: 'write', position: size, data: `edited ${path}\n` });
        await writable.close();
      }
    },
    { folder, paths },
  );
}

export async function benchFolderSync(harness: E2eHarness, files: number, log: (line: string) => void, bareFiles = files): Promise<BenchRow[]> {
  const server = await harness.startServer();
  const workspace = await seedManyFiles(server.origin, files, { log });
  const api = new ServerApi(server.origin, workspace.token);
  let totalBytes = workspace.totalBytes;
  for (let k = 0; k < LARGE_FILES; k++) {
    const bytes = largeBytes(k);
    await commitBytes(api, workspace.namespaceId, largePath(k), bytes);
    totalBytes += bytes.length;
  }
  const tag = `folder-sync-${process.pid}-${Date.now()}`;
  const context = await harness.newProfileBrowser([markerSwitch(tag)]);
  const page = context.pages()[0] ?? (await context.newPage());
  // tsx keeps function names with a `__name` helper that page code does not have.
  await page.addInitScript({ content: 'globalThis.__name ??= (fn) => fn;' });
  // Stands in for the folder picker dialog, which a headless browser cannot click.
  await page.addInitScript((name) => {
    window.showDirectoryPicker = async () => (await navigator.storage.getDirectory()).getDirectoryHandle(name, { create: true });
  }, SYNCED_FOLDER);
  await joinWithLink(page, workspace.shareLink, workspace.namespaceId);
  await page.waitForFunction(
    (expected) => {
      const element = document.querySelector('[data-testid="overall-progress"]');
      return element !== null && Number(element.getAttribute('data-total-bytes')) === expected && Number(element.getAttribute('data-done-bytes')) === expected;
    },
    totalBytes,
    { timeout: 0, polling: 250 },
  );
  log(`folder-sync: ${files} + ${LARGE_FILES} files (${(totalBytes / 1e6).toFixed(1)} MB) synced into the browser`);

  const bareCount = Math.min(files, bareFiles);
  const bareBefore = await bareLoopSeconds(page, 'bench-bare-1', bareCount);
  log(`folder-sync: bare loop ${bareBefore.toFixed(2)} s`);

  const idleBeforeWrite = chromiumRss(tag);
  const writeSampler = new RssSampler(tag, 1_000);
  writeSampler.start();
  const began = performance.now();
  await page.getByTestId('folder-sync-pick').click();
  const expected = files + LARGE_FILES;
  await page.waitForFunction(
    (count) => Number(document.querySelector<HTMLElement>('[data-testid="folder-sync"]')?.dataset.written ?? 0) >= count,
    expected,
    { timeout: 0, polling: 50 },
  );
  const syncSeconds = (performance.now() - began) / 1000;
  const writeRss = rssColumns(idleBeforeWrite, writeSampler.stop());
  log(`folder-sync: folder sync ${syncSeconds.toFixed(2)} s`);

  // Nothing changed: a page focus asks for a scan; timed until the panel shows it done.
  const rescanRow = async (scenario: string, change: () => Promise<void>, done: () => Promise<boolean>) => {
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const idle = chromiumRss(tag);
    const sampler = new RssSampler(tag);
    sampler.start();
    const began = performance.now();
    await change();
    while (!(await done())) await new Promise((resolve) => setTimeout(resolve, 50));
    const seconds = (performance.now() - began) / 1000;
    const peak = sampler.stop();
    log(`folder-sync: ${scenario} ${seconds.toFixed(2)} s`);
    return { scenario, files: expected, seconds: Number(seconds.toFixed(2)), ...rssColumns(idle, peak) };
  };
  // The first scan follows the first write; the rescans are timed after it.
  await page.waitForFunction(() => Number(document.querySelector<HTMLElement>('[data-testid="folder-sync"]')?.dataset.lastScan ?? 0) > 0, null, { timeout: 0, polling: 250 });
  const scanBefore = await panelCount(page, 'lastScan');
  const rescan = await rescanRow(
    'folder-sync-rescan-unchanged',
    () => page.evaluate(() => void window.dispatchEvent(new Event('focus'))),
    async () => (await panelCount(page, 'lastScan')) > scanBefore,
  );
  const uploadedBefore = await panelCount(page, 'uploaded');
  const touched = Array.from({ length: TOUCHED }, (_, k) => manyFilesPath(Math.floor((k * files) / TOUCHED)));
  const touch = await rescanRow(
    `folder-sync-rescan-${TOUCHED}-touched`,
    () => touchFiles(page, SYNCED_FOLDER, touched),
    async () => (await panelCount(page, 'uploaded')) >= uploadedBefore + TOUCHED,
  );
  // One entry from another device (a new file), timed until folder sync has written it.
  const writtenBefore = await panelCount(page, 'written');
  const remote = await rescanRow(
    'folder-sync-remote-entry',
    () => commitBytes(api, workspace.namespaceId, REMOTE_PATH, printableBytes(7, 1000)).then(() => undefined),
    async () => (await panelCount(page, 'written')) > writtenBefore,
  );

  const bareAfter = await bareLoopSeconds(page, 'bench-bare-2', bareCount);
  log(`folder-sync: bare loop again ${bareAfter.toFixed(2)} s`);

  // The touched files were edited: the sample avoids them (index 0 is one).
  const sampleIndexes = [1, files - 1, Math.floor(files / 2) + 1].map((index) => Math.min(index, files - 1));
  const bareSample = [1, bareCount - 1].map((index) => Math.min(index, bareCount - 1));
  const synced = await folderHashes(page, SYNCED_FOLDER, [...sampleIndexes.map(manyFilesPath), largePath(0), largePath(LARGE_FILES - 1)]);
  const bare = await folderHashes(page, 'bench-bare-2', [...bareSample.map(manyFilesPath), largePath(0)]);
  const hashOf = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
  const byteExact =
    synced.join() === [...sampleIndexes.map(manyFilesBytes), largeBytes(0), largeBytes(LARGE_FILES - 1)].map(hashOf).join() &&
    bare.join() === [...bareSample.map(manyFilesBytes), largeBytes(0)].map(hashOf).join();
  await context.close();

  const bareSeconds = (bareBefore + bareAfter) / 2;
  const bareFilesPerS = (bareCount + LARGE_FILES) / bareSeconds;
  return [
    {
      scenario: 'folder-sync',
      files: expected,
      mb: Number((totalBytes / 1e6).toFixed(1)),
      folderSyncS: Number(syncSeconds.toFixed(2)),
      folderSyncFilesPerS: Math.round(expected / syncSeconds),
      bareLoopFiles: bareCount + LARGE_FILES,
      bareLoopS: Number(bareSeconds.toFixed(2)),
      bareLoopRunsS: `${bareBefore.toFixed(2)} / ${bareAfter.toFixed(2)}`,
      // Per file: the bare loop may have written fewer files.
      ratio: Number((expected / syncSeconds / bareFilesPerS).toFixed(3)),
      goal: 0.5,
      byteExact: byteExact ? 'yes' : 'NO',
      ...writeRss,
    },
    rescan,
    touch,
    remote,
  ];
}
