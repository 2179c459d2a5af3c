import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { crc32 as zlibCrc32 } from 'node:zlib';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import { PseudoRandomFile } from '../support/pseudo-random-file.ts';
import { E2eHarness, makeTempDir, runCleanups } from './harness.ts';
import { manyFilesBytes, manyFilesPath, seedManyFiles } from './support/seed-many-files.ts';
import { seedWorkspace, type SeedFile } from './support/seed-workspace.ts';
import { fileRow, joinWithLink, openFolder, showFileFolder, waitForAllSynced, waitForRole } from './ui.ts';

/**
 * Download as .zip in real Chromium: the page's save dialog is answered with a file in the
 * origin-private file system (a real FileSystemFileHandle; the dialog itself cannot be driven
 * headless), the sync worker streams the archive into it, and the test reads the file back
 * out and checks it with Debian's Info-ZIP `unzip` (not with the writer's own code): every
 * file byte-exact, names (Unicode, nested), times, an empty file, a multi-block file, a block
 * two files share, from the tab that syncs and from a second tab that mirrors it; 3,000 small
 * files. Then a zip that waits for a file still syncing, cancelled, and run again. And the
 * blocks' kept CRC-32s: recorded as blocks sync, combined per file by a zip (files of many
 * blocks, a block repeated), computed and recorded again where a store has none, and a record
 * that does not fit its block ignored.
 */

const run = promisify(execFile);
const MiB = 1024 * 1024;
const MTIME = Date.UTC(2024, 6, 14, 9, 41, 30);

const photo = randomBytes(100_000);
const FILES: SeedFile[] = [
  { path: 'readme.txt', bytes: Buffer.from('top level\n'), mtime: MTIME },
  { path: 'empty.txt', bytes: new Uint8Array(0), mtime: MTIME },
  { path: 'Fotos/Ürlaub 2024/straße ✓.jpg', bytes: photo, mtime: MTIME },
  { path: 'Fotos/Ürlaub 2024/日本語 メモ.txt', bytes: Buffer.from('こんにちは\n'), mtime: MTIME },
  { path: 'Fotos/big/multi.bin', bytes: randomBytes(9 * MiB + 123), mtime: MTIME },
  { path: 'docs/a/b/c/deep.md', bytes: randomBytes(3000), mtime: MTIME },
  // The same bytes as the photo: one block, two entries.
  { path: 'docs/copy of photo.jpg', bytes: photo, mtime: MTIME },
];
const totalBytes = (files: SeedFile[]) => files.reduce((sum, file) => sum + file.bytes.length, 0);

/** Answers the save dialog with a file in OPFS `zip-out/`, and records what the page suggested. */
const SAVE_DIALOG_TO_OPFS = () => {
  const picked: string[] = [];
  (window as unknown as { __zipPicked: string[] }).__zipPicked = picked;
  (window as unknown as { showSaveFilePicker: unknown }).showSaveFilePicker = async (options: { suggestedName: string }) => {
    picked.push(options.suggestedName);
    const root = await navigator.storage.getDirectory();
    const folder = await root.getDirectoryHandle('zip-out', { create: true });
    return folder.getFileHandle(options.suggestedName, { create: true });
  };
};

/** A browser without `showSaveFilePicker` (Firefox, Safari). */
const NO_SAVE_DIALOG = () => {
  delete (Window.prototype as unknown as { showSaveFilePicker?: unknown }).showSaveFilePicker;
  delete (window as unknown as { showSaveFilePicker?: unknown }).showSaveFilePicker;
};

let harness: E2eHarness;
/** The test's own temp dirs (archives copied out, extracted trees). */
const tempDirs: (() => Promise<void>)[] = [];

beforeAll(async () => {
  harness = await E2eHarness.start();
}, 180_000);

afterAll(async () => {
  await runCleanups(tempDirs);
  await harness?.close();
});

async function newPage(): Promise<Page> {
  const page = await (await harness.newBrowser()).newPage();
  page.on('pageerror', (error) => console.error('page error:', error.message));
  await page.addInitScript(SAVE_DIALOG_TO_OPFS);
  return page;
}

/** The OPFS file `zip-out/<name>` copied out to a temp file, or null when it does not exist. */
async function copyOutOfOpfs(page: Page, name: string): Promise<string | null> {
  const base64 = await page.evaluate(async (fileName) => {
    const root = await navigator.storage.getDirectory();
    let file: File;
    try {
      file = await (await (await root.getDirectoryHandle('zip-out')).getFileHandle(fileName)).getFile();
    } catch {
      return null;
    }
    const bytes = new Uint8Array(await file.arrayBuffer());
    let text = '';
    for (let at = 0; at < bytes.length; at += 0x8000) text += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
    return btoa(text);
  }, name);
  if (base64 === null) return null;
  const path = join(await makeTempDir('nearsync-zip-out-', tempDirs), name);
  await writeFile(path, Buffer.from(base64, 'base64'));
  return path;
}

/** Extracts with unzip after `unzip -t`, and returns every extracted file by its path. */
async function unzipAll(archive: string): Promise<Map<string, Buffer>> {
  const test = await run('unzip', ['-t', archive]);
  expect(test.stdout).toContain('No errors detected');
  const dir = await makeTempDir('nearsync-unzipped-', tempDirs);
  await run('unzip', ['-q', archive, '-d', dir]);
  const files = new Map<string, Buffer>();
  const walk = async (folder: string) => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else files.set(relative(dir, path), await readFile(path));
    }
  };
  await walk(dir);
  return files;
}

async function downloadZip(page: Page, expectedName: string, timeout = 60_000): Promise<void> {
  // A notice of an earlier zip of the same name may still be up: only a new one answers this zip.
  await page.evaluate(() => {
    for (const notice of document.querySelectorAll('[data-testid="notice-info"], [data-testid="notice-error"]')) notice.setAttribute('data-earlier-zip', '');
  });
  await page.getByTestId('download-zip').click();
  const saved = page.locator('[data-testid="notice-info"]:not([data-earlier-zip])').filter({ hasText: `Saved ${expectedName}` });
  const failed = page.locator('[data-testid="notice-error"]:not([data-earlier-zip])').filter({ hasText: expectedName });
  await saved.or(failed).first().waitFor({ timeout });
  if ((await failed.count()) > 0) throw new Error(`the zip failed: ${await failed.first().textContent()}`);
  expect(await page.evaluate(() => (window as unknown as { __zipPicked: string[] }).__zipPicked.at(-1))).toBe(expectedName);
}

/** The block CRC records in the page's origin (block-crcs.ts), by block hash. */
async function crcRecords(page: Page): Promise<Record<string, unknown>> {
  return page.evaluate(
    () =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const open = indexedDB.open('nearsync-block-crcs');
        // Not there yet: do not create it (an empty version-1 database the worker would then find).
        open.onupgradeneeded = () => open.transaction!.abort();
        open.onerror = () => (open.error?.name === 'AbortError' ? resolve({}) : reject(open.error));
        open.onsuccess = () => {
          const db = open.result;
          const out: Record<string, unknown> = {};
          if (!db.objectStoreNames.contains('crcs')) {
            db.close();
            resolve(out);
            return;
          }
          const cursor = db.transaction('crcs').objectStore('crcs').openCursor();
          cursor.onerror = () => reject(cursor.error);
          cursor.onsuccess = () => {
            const at = cursor.result;
            if (!at) {
              db.close();
              resolve(out);
              return;
            }
            out[String(at.key)] = at.value;
            at.continue();
          };
        };
      }),
  );
}

/** Replaces the page's block CRC records (a store written by older code, or tampered with). */
async function setCrcRecords(page: Page, records: Record<string, unknown> | null): Promise<void> {
  await page.evaluate(
    (entries) =>
      new Promise<void>((resolve, reject) => {
        // Deleting closes the sync worker's connection (it steps aside on versionchange); it reopens on its next use.
        const deleted = indexedDB.deleteDatabase('nearsync-block-crcs');
        deleted.onerror = () => reject(deleted.error);
        deleted.onsuccess = () => {
          if (!entries) return resolve();
          const open = indexedDB.open('nearsync-block-crcs', 2);
          open.onupgradeneeded = () => open.result.createObjectStore('crcs');
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            const tx = open.result.transaction('crcs', 'readwrite');
            for (const [key, value] of entries) tx.objectStore('crcs').put(value, key);
            tx.oncomplete = () => {
              open.result.close();
              resolve();
            };
            tx.onerror = () => reject(tx.error);
          };
        };
      }),
    records && Object.entries(records),
  );
}

/** The 4 MiB blocks of `bytes` (as every client cuts): hash, CRC-32 and length of each. */
function blocksOf(bytes: Uint8Array): { hash: string; crc32: number; size: number }[] {
  const out = [];
  for (let at = 0; at < bytes.length; at += 4 * MiB) {
    const block = bytes.subarray(at, at + 4 * MiB);
    out.push({ hash: createHash('sha256').update(block).digest('hex'), crc32: zlibCrc32(block), size: block.length });
  }
  return out;
}

describe('Download as .zip', () => {
  test('the whole workspace and one folder, from the syncing tab and a second one, checked by unzip byte for byte', { timeout: 180_000 }, async () => {
    const server = await harness.startServer();
    const workspace = await seedWorkspace(server.origin, 'Zip Team', FILES);
    const page = await newPage();
    await joinWithLink(page, workspace.shareLink(server.origin), workspace.namespaceId);
    await waitForAllSynced(page, totalBytes(FILES));

    const button = page.getByTestId('download-zip');
    expect(await button.textContent()).toBe('Download all as .zip');
    await downloadZip(page, 'Zip Team.zip');
    const whole = await copyOutOfOpfs(page, 'Zip Team.zip');
    const extracted = await unzipAll(whole!);
    expect([...extracted.keys()].sort()).toEqual(FILES.map((file) => file.path).sort());
    for (const file of FILES) expect(Buffer.compare(extracted.get(file.path)!, file.bytes), file.path).toBe(0);
    // Times from the journal, as the extended timestamp (UTC) that zipinfo -T shows.
    const { stdout: listing } = await run('zipinfo', ['-T', whole!], { env: { ...process.env, TZ: 'UTC' } });
    expect(listing).toContain('20240714.094130 Fotos/Ürlaub 2024/straße ✓.jpg');

    // One folder: the button follows the open folder; entries are named from inside it.
    await openFolder(page, 'Fotos');
    expect(await button.textContent()).toBe('Download “Fotos” as .zip');
    await downloadZip(page, 'Fotos.zip');
    const fotos = await unzipAll((await copyOutOfOpfs(page, 'Fotos.zip'))!);
    const inFotos = FILES.filter((file) => file.path.startsWith('Fotos/'));
    expect([...fotos.keys()].sort()).toEqual(inFotos.map((file) => file.path.slice('Fotos/'.length)).sort());
    for (const file of inFotos) expect(Buffer.compare(fotos.get(file.path.slice('Fotos/'.length))!, file.bytes)).toBe(0);
    // The status line is gone once done, and the button is usable again.
    expect(await page.getByTestId('zip-status').isHidden()).toBe(true);
    expect(await button.isEnabled()).toBe(true);

    // A second tab of this browser mirrors the first (no engine of its own): it zips too.
    const second = await page.context().newPage();
    await second.addInitScript(SAVE_DIALOG_TO_OPFS);
    await second.goto(`${server.origin}/w/${workspace.namespaceId}`);
    await waitForRole(second, 'follower');
    await waitForAllSynced(second, totalBytes(FILES));
    await openFolder(second, 'docs');
    await downloadZip(second, 'docs.zip');
    const docs = await unzipAll((await copyOutOfOpfs(second, 'docs.zip'))!);
    const inDocs = FILES.filter((file) => file.path.startsWith('docs/'));
    expect([...docs.keys()].sort()).toEqual(inDocs.map((file) => file.path.slice('docs/'.length)).sort());
    for (const file of inDocs) expect(Buffer.compare(docs.get(file.path.slice('docs/'.length))!, file.bytes)).toBe(0);
  });

  test('entry CRCs from the blocks\' kept CRCs: recorded as blocks sync, recomputed where missing, a record that does not fit ignored; unzip checks every byte', { timeout: 240_000 }, async () => {
    const repeated = randomBytes(4 * MiB);
    const files: SeedFile[] = [
      // 11 blocks, the last 5 bytes long (that one is small: read, not recorded).
      { path: 'long/eleven blocks.bin', bytes: randomBytes(40 * MiB + 5), mtime: MTIME },
      // The same block twice, then a tail of a block file's size.
      { path: 'long/repeats.bin', bytes: Buffer.concat([repeated, repeated, randomBytes(100_000)]), mtime: MTIME },
      { path: 'long/one block.bin', bytes: randomBytes(4 * MiB), mtime: MTIME },
      { path: 'note.txt', bytes: Buffer.from('small\n'), mtime: MTIME },
    ];
    const server = await harness.startServer();
    const workspace = await seedWorkspace(server.origin, 'Crc', files);
    const page = await newPage();
    await joinWithLink(page, workspace.shareLink(server.origin), workspace.namespaceId);
    await waitForAllSynced(page, totalBytes(files));
    const large = new Map(files.flatMap((file) => blocksOf(file.bytes)).filter((block) => block.size > 48 * 1024).map((block) => [block.hash, block]));
    expect(large.size).toBe(10 + 2 + 1);

    // The block writer recorded a CRC for each 4 MiB block it stored (within a second of storing
    // it; a smaller block may have been stored on the sync worker's thread, without one).
    const full = [...large.values()].filter((block) => block.size === 4 * MiB);
    expect(full).toHaveLength(12);
    await expect
      .poll(async () => {
        const recorded = await crcRecords(page);
        return full.filter((block) => recorded[block.hash] !== undefined).length;
      }, { timeout: 10_000 })
      .toBe(full.length);
    const recorded = await crcRecords(page);
    for (const block of full) expect(recorded[block.hash], block.hash).toEqual({ crc32: block.crc32, size: block.size });

    const check = async (name: string) => {
      await downloadZip(page, name);
      const extracted = await unzipAll((await copyOutOfOpfs(page, name))!);
      expect([...extracted.keys()].sort()).toEqual(files.map((file) => file.path).sort());
      for (const file of files) expect(Buffer.compare(extracted.get(file.path)!, file.bytes), file.path).toBe(0);
    };
    // Entry CRCs combined from records (unzip -t checks each against the bytes); a block
    // without one is read, checked and recorded.
    await check('Crc.zip');
    await expect.poll(async () => Object.keys(await crcRecords(page)).length, { timeout: 10_000 }).toBe(large.size);

    // A store without records (as before they were kept): the zip computes them, and keeps them.
    await setCrcRecords(page, null);
    await page.evaluate(() => navigator.storage.getDirectory().then((root) => root.removeEntry('zip-out', { recursive: true })));
    await check('Crc.zip');
    await expect.poll(async () => Object.keys(await crcRecords(page)).length, { timeout: 10_000 }).toBe(large.size);
    expect((await crcRecords(page))[[...large.keys()][0]]).toEqual({ crc32: [...large.values()][0].crc32, size: 4 * MiB });

    // Records that do not fit their blocks (another length, not a record at all) are not used.
    const [first, second] = [...large.values()];
    await setCrcRecords(page, { [first.hash]: { crc32: (first.crc32 ^ 1) >>> 0, size: first.size - 1 }, [second.hash]: 'not a record' });
    await page.evaluate(() => navigator.storage.getDirectory().then((root) => root.removeEntry('zip-out', { recursive: true })));
    await check('Crc.zip');
    await expect.poll(async () => (await crcRecords(page))[first.hash], { timeout: 10_000 }).toEqual({ crc32: first.crc32, size: first.size });
    // Every record the zip recomputed written (a later write would land over the one planted below).
    await expect.poll(async () => Object.keys(await crcRecords(page)).length, { timeout: 10_000 }).toBe(large.size);

    // And a record of the right length is what the entry's CRC is made of (no byte is read):
    // planted wrong, unzip finds that one entry's CRC bad.
    const only = blocksOf(files[2].bytes)[0];
    // `>>> 0`: a record's CRC is unsigned, and `^` gives a negative number for a CRC with the
    // top bit set (half of all blocks), which the zip rightly ignores as not a record: that was
    // the flake (the block read and its CRC computed, about one run in two).
    const wrong = (only.crc32 ^ 1) >>> 0;
    await setCrcRecords(page, { [only.hash]: { crc32: wrong, size: only.size } });
    await downloadZip(page, 'Crc.zip');
    const planted = (await copyOutOfOpfs(page, 'Crc.zip'))!;
    const tested = await run('unzip', ['-t', planted]).then((result) => result.stdout, (error: { stdout: string }) => error.stdout);
    expect(tested).toMatch(/long\/one block\.bin\s+bad CRC/);
    expect(tested).toMatch(/long\/eleven blocks\.bin\s+OK/);
  });

  test('waits for a file still syncing; Cancel stops it and leaves no file; a second try completes', { timeout: 240_000 }, async () => {
    // Server egress at 1 MiB/s: the 16 MiB file takes about 16 s to arrive (and the small one
    // may queue behind it).
    const server = await harness.startServer({ egressBytesPerSecond: 1 * MiB });
    const files: SeedFile[] = [
      { path: 'slow/first.txt', bytes: Buffer.from('small and early\n'), mtime: MTIME },
      { path: 'slow/zz-large.bin', bytes: randomBytes(16 * MiB), mtime: MTIME },
    ];
    const workspace = await seedWorkspace(server.origin, 'Slow', files);
    const page = await newPage();
    await joinWithLink(page, workspace.shareLink(server.origin), workspace.namespaceId);
    await showFileFolder(page, 'slow/first.txt');
    await fileRow(page, 'slow/zz-large.bin').waitFor();
    const before = await page.getByTestId('overall-progress').getAttribute('data-done-bytes');

    await page.getByTestId('download-zip').click();
    const status = page.getByTestId('zip-status-text');
    // The zip waits for whichever file has not arrived yet (the fetch order is the sync's).
    await status
      .filter({ hasText: /waiting for slow\/(first\.txt|zz-large\.bin) to sync/ })
      .waitFor({ timeout: 30_000 })
      .catch(async (error: unknown) => {
        const notices = await page.getByTestId('notices').textContent();
        const row = await fileRow(page, 'slow/zz-large.bin').getAttribute('data-status');
        throw new Error(`no wait shown; ${before} bytes synced at the click; status "${await status.textContent()}", notices "${notices}", large file ${row}`, { cause: error });
      });
    await page.getByTestId('zip-cancel').click();
    await page.getByTestId('notice-info').filter({ hasText: 'Stopped writing slow.zip' }).waitFor({ timeout: 10_000 });
    expect(await copyOutOfOpfs(page, 'slow.zip')).toBeNull();

    // Again, left to finish: it completes once the sync has brought the rest.
    await downloadZip(page, 'slow.zip', 120_000);
    const extracted = await unzipAll((await copyOutOfOpfs(page, 'slow.zip'))!);
    expect([...extracted.keys()].sort()).toEqual(['first.txt', 'zz-large.bin']);
    for (const file of files) expect(Buffer.compare(extracted.get(file.path.slice('slow/'.length))!, file.bytes)).toBe(0);
    expect((await stat((await copyOutOfOpfs(page, 'slow.zip'))!)).size).toBeGreaterThan(16 * MiB);
  });

  test('without the save dialog the archive is a download the service worker answers, checked by unzip; a cancelled download stops the zip; job links work once', { timeout: 240_000 }, async () => {
    const server = await harness.startServer({ egressBytesPerSecond: 2 * MiB });
    const workspace = await seedWorkspace(server.origin, 'Zip Team', FILES);
    const page = await (await harness.newBrowser()).newPage();
    page.on('pageerror', (error) => console.error('page error:', error.message));
    await page.addInitScript(NO_SAVE_DIALOG);
    await joinWithLink(page, workspace.shareLink(server.origin), workspace.namespaceId);
    await waitForAllSynced(page, totalBytes(FILES));
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 30_000 });

    const started = page.waitForEvent('download');
    await page.getByTestId('download-zip').click();
    const download = await started;
    expect(download.suggestedFilename()).toBe('Zip Team.zip');
    const saved = await download.path();
    expect(await download.failure()).toBeNull();
    await page.getByTestId('notice-info').filter({ hasText: 'Saved Zip Team.zip: 7 files' }).waitFor({ timeout: 30_000 });
    const extracted = await unzipAll(saved);
    expect([...extracted.keys()].sort()).toEqual(FILES.map((file) => file.path).sort());
    for (const file of FILES) expect(Buffer.compare(extracted.get(file.path)!, file.bytes), file.path).toBe(0);

    // The job's URL answered once; another job id was never announced: both are refused.
    const refusals = await page.evaluate(async ({ ns, used }) => {
      const reused = await fetch(used);
      const unknown = await fetch(`/w/${ns}/zip/${crypto.randomUUID()}/x.zip`);
      const malformed = await fetch(`/w/${ns}/zip/not-a-job/x.zip`);
      return [reused.status, unknown.status, malformed.status, unknown.headers.get('content-security-policy'), await unknown.text()];
    }, { ns: workspace.namespaceId, used: new URL(download.url()).pathname });
    expect(refusals.slice(0, 4)).toEqual([404, 404, 400, 'sandbox']);
    expect(refusals[4]).toContain('expired or was used already');

    // The worker answers every announcement, so the page starts a download only once the job is
    // held: a job id that is not a UUID is refused with the reason, a good one confirmed.
    const answers = await page.evaluate(async (ns) => {
      const announce = (jobId: string) =>
        new Promise<unknown>((resolve) => {
          const stream = new MessageChannel();
          const answer = new MessageChannel();
          answer.port1.onmessage = (event) => resolve(event.data);
          navigator.serviceWorker.controller!.postMessage({ type: 'nearsync:zip-download', ns, jobId }, [stream.port2, answer.port2]);
        });
      const good = crypto.randomUUID();
      return [await announce('not-a-job'), await announce(good), good];
    }, workspace.namespaceId);
    expect(answers[0]).toEqual({ type: 'nearsync:zip-refused', jobId: 'not-a-job', message: 'the job id is not a UUID' });
    expect(answers[1]).toEqual({ type: 'nearsync:zip-announced', jobId: answers[2] });

    // A file still arriving (2 MiB/s for 24 MiB): the zip waits for it inside the download;
    // cancelling the download in the browser stops the zip, and the page says so.
    await new PseudoRandomFile('zip download late', 24 * MiB).commitTo(new ServerApi(server.origin, workspace.token), workspace.namespaceId, 'late/zz-large.bin');
    await showFileFolder(page, 'late/zz-large.bin');
    await openFolder(page, 'late');
    const second = page.waitForEvent('download');
    await page.getByTestId('download-zip').click();
    const slow = await second;
    await page.getByTestId('zip-status-text').filter({ hasText: /waiting for late\/zz-large\.bin to sync/ }).waitFor({ timeout: 30_000 });
    await slow.cancel();
    await page.getByTestId('notice-info').filter({ hasText: 'Stopped writing late.zip' }).waitFor({ timeout: 30_000 });
    expect(await page.getByTestId('zip-status').isHidden()).toBe(true);
  });

  test('a browser with neither a save dialog nor service workers gets a line saying what is needed, not a button', { timeout: 120_000 }, async () => {
    const server = await harness.startServer();
    const workspace = await seedWorkspace(server.origin, 'No picker', [FILES[0]]);
    const page = await (await harness.newBrowser()).newPage();
    await page.addInitScript(NO_SAVE_DIALOG);
    await page.addInitScript(() => {
      delete (Navigator.prototype as unknown as { serviceWorker?: unknown }).serviceWorker;
    });
    await joinWithLink(page, workspace.shareLink(server.origin), workspace.namespaceId);
    await waitForAllSynced(page, FILES[0].bytes.length);
    expect(await page.getByTestId('zip-unavailable').textContent()).toContain('needs a browser that can save into a chosen file or stream a download');
    expect(await page.getByTestId('download-zip').count()).toBe(0);
  });

  test('3,000 small files: every one in the archive, byte-exact, in the order of the folder view', { timeout: 240_000 }, async () => {
    const count = 3_000;
    const server = await harness.startServer();
    const workspace = await seedManyFiles(server.origin, count);
    const page = await newPage();
    await joinWithLink(page, workspace.shareLink, workspace.namespaceId);
    await waitForAllSynced(page, workspace.totalBytes, 120_000);
    await downloadZip(page, `many files ${count}.zip`, 120_000);
    const archive = (await copyOutOfOpfs(page, `many files ${count}.zip`))!;
    const extracted = await unzipAll(archive);
    expect(extracted.size).toBe(count);
    for (let index = 0; index < count; index++) {
      expect(Buffer.compare(extracted.get(manyFilesPath(index))!, manyFilesBytes(index)), manyFilesPath(index)).toBe(0);
    }
    // Entries in the folder view's order: folders first, names in numeric order.
    const { stdout } = await run('zipinfo', ['-1', archive], { maxBuffer: 16 * MiB });
    const names = stdout.trim().split('\n');
    expect(names.slice(0, 2)).toEqual(['project-0/part-0/file-000000.txt', 'project-0/part-0/file-000100.txt']);
    expect(names.at(-1)).toBe(manyFilesPath(2999));
  });
});
