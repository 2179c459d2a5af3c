import { execFile } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import type { CDPSession, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { E2eHarness, makeTempDir, randomBuffer, runCleanups, sha256, type TestServer } from './harness.ts';
import { seedWorkspace, type SeededWorkspace } from './support/seed-workspace.ts';
import { fileRow, joinWithLink, openFolder, overallProgress, saveFileAndHash, scrollToRow, waitForAllSynced, waitForRole } from './ui.ts';

/**
 * Online-only files in real Chromium against a real server on loopback. A join whose files
 * will not fit the browser's quota (lowered through the DevTools protocol) asks first and
 * fetches nothing; "online only" lets it finish. A folder set back to "keep" syncs, the
 * online-only ones are listed with their sizes but never fetched by the background sync
 * (the server's block byte counter says exactly what was fetched). Opening one file through
 * its file URL fetches exactly its blocks, right bytes; a zip, Save and folder sync of
 * online-only files work; blocks read for them sit in a storage bucket the browser may clear
 * (deleted here: the next open fetches again) and bounded by an LRU limit (once over it they
 * are gone and the next open fetches them again, still the right bytes); keeping the folder
 * moves them to the kept store.
 */

const run = promisify(execFile);
const MiB = 1024 * 1024;
const kept = randomBuffer(3 * MiB);
const big = randomBuffer(9 * MiB + 123);
const small = randomBuffer(200_000);
const more = randomBuffer(12 * MiB);
const FILES = [
  { path: 'keep/a.bin', bytes: kept },
  { path: 'cloud/big.bin', bytes: big },
  { path: 'cloud/notes/small.bin', bytes: small },
  { path: 'cloud/more.bin', bytes: more },
];

/** Answers the save dialog of "Download as .zip" with a file in OPFS `zip-out/`. */
const SAVE_DIALOG_TO_OPFS = () => {
  (window as unknown as { showSaveFilePicker: unknown }).showSaveFilePicker = async (options: { suggestedName: string }) => {
    const root = await navigator.storage.getDirectory();
    const folder = await root.getDirectoryHandle('zip-out', { create: true });
    return folder.getFileHandle(options.suggestedName, { create: true });
  };
};

let harness: E2eHarness;
let server: TestServer;
let workspace: SeededWorkspace;
const tempDirs: (() => Promise<void>)[] = [];

const served = async () => (await server.metrics()).blockBytesServed;

/** Reads a file URL in the page (through the service worker) and returns the bytes' SHA-256 and length. */
async function readFileUrl(page: Page, path: string): Promise<{ sha256: string; length: number; status: number }> {
  return page.evaluate(async (url) => {
    const response = await fetch(url);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return { sha256: [...digest].map((byte) => byte.toString(16).padStart(2, '0')).join(''), length: bytes.length, status: response.status };
  }, `/w/${workspace.namespaceId}/file/${path.split('/').map(encodeURIComponent).join('/')}`);
}

/** Block files in this browser's kept store (`default`) or in the online-only cache's storage bucket. */
async function blockFilesIn(page: Page, where: 'default' | 'cache'): Promise<string[]> {
  return page.evaluate(async (place) => {
    type Dir = FileSystemDirectoryHandle & { entries(): AsyncIterable<[string, FileSystemHandle]> };
    const buckets = (navigator as unknown as { storageBuckets: { keys(): Promise<string[]>; open(name: string): Promise<{ getDirectory(): Promise<FileSystemDirectoryHandle> }> } }).storageBuckets;
    if (place === 'cache' && !(await buckets.keys()).includes('nearsync-online-cache')) return [];
    const origin = place === 'default' ? await navigator.storage.getDirectory() : await (await buckets.open('nearsync-online-cache')).getDirectory();
    const names: string[] = [];
    let root: Dir;
    try {
      root = (await origin.getDirectoryHandle('blocks')) as Dir;
    } catch {
      return names;
    }
    for await (const [name, handle] of root.entries()) {
      if (handle.kind !== 'directory' || name === 'tmp') continue;
      for await (const [file] of (handle as Dir).entries()) names.push(file);
    }
    return names;
  }, where);
}

/** Every file of the linked folder (origin-private `linked/`) with the SHA-256 of its bytes. */
async function linkedFolderContents(page: Page): Promise<Record<string, string>> {
  return page.evaluate(async () => {
    const hex = (digest: ArrayBuffer) => [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, '0')).join('');
    const out: Record<string, string> = {};
    const walk = async (dir: FileSystemDirectoryHandle, prefix: string): Promise<void> => {
      for await (const [entry, handle] of (dir as unknown as { entries(): AsyncIterable<[string, FileSystemHandle]> }).entries()) {
        const path = prefix ? `${prefix}/${entry}` : entry;
        if (handle.kind === 'directory') await walk(handle as FileSystemDirectoryHandle, path);
        else out[path] = hex(await crypto.subtle.digest('SHA-256', await (await (handle as FileSystemFileHandle).getFile()).arrayBuffer()));
      }
    };
    await walk(await (await navigator.storage.getDirectory()).getDirectoryHandle('linked'), '');
    return out;
  });
}

async function zipEntries(page: Page, name: string): Promise<Map<string, Buffer>> {
  const base64 = await page.evaluate(async (fileName) => {
    const root = await navigator.storage.getDirectory();
    const file = await (await (await root.getDirectoryHandle('zip-out')).getFileHandle(fileName)).getFile();
    const bytes = new Uint8Array(await file.arrayBuffer());
    let text = '';
    for (let at = 0; at < bytes.length; at += 0x8000) text += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
    return btoa(text);
  }, name);
  const dir = await makeTempDir('nearsync-online-zip-', tempDirs);
  const archive = join(dir, name);
  await writeFile(archive, Buffer.from(base64, 'base64'));
  const out = join(dir, 'out');
  await run('unzip', ['-q', archive, '-d', out]);
  const entries = new Map<string, Buffer>();
  const walk = async (folder: string) => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else entries.set(relative(out, path), await readFile(path));
    }
  };
  await walk(out);
  return entries;
}

describe('online-only files', () => {
  beforeAll(async () => {
    harness = await E2eHarness.start();
    server = await harness.startServer();
    workspace = await seedWorkspace(server.origin, 'Online only', FILES);
  }, 180_000);

  afterAll(async () => {
    await runCleanups(tempDirs);
    await harness?.close();
  });

  test('a join over quota asks first; online only finishes it; online-only files are fetched on open, zip and save, and their cache is evictable', { timeout: 240_000 }, async () => {
    const page: Page = await (await harness.newBrowser()).newPage();
    page.on('pageerror', (error) => console.error('page error:', error.message));
    await page.addInitScript(SAVE_DIALOG_TO_OPFS);
    // Folder sync's picker answers with an origin-private folder (the dialog cannot be clicked headless).
    await page.addInitScript(() => {
      window.showDirectoryPicker = async () => (await navigator.storage.getDirectory()).getDirectoryHandle('linked', { create: true });
    });
    const cdp: CDPSession = await page.context().newCDPSession(page);
    // Room for the app's own databases and a third of the workspace, as a small disk would leave.
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: 14 * MiB });
    const before = await served();

    await joinWithLink(page, workspace.shareLink(server.origin), workspace.namespaceId);
    const question = page.getByTestId('join-question');
    await question.waitFor({ state: 'visible', timeout: 60_000 });
    expect(await page.getByTestId('join-question-text').textContent()).toMatch(/^This workspace holds 25\.\d MB, but this browser (will not let this site store that much|lets this site store only about .+ more)\. Nothing has been downloaded yet\./);
    // Asked, not failing half-way: nothing was fetched, nothing is paused for storage.
    expect(await served()).toBe(before);
    expect(await page.getByTestId('storage-full').isHidden()).toBe(true);

    await page.getByTestId('join-online-only').click();
    await question.waitFor({ state: 'hidden' });
    expect(await page.getByTestId('keep-select').first().inputValue()).toBe('online');
    // The workspace is listed as usual, sizes included, and nothing is fetched for it.
    const cloudRow = page.locator('[data-testid="folder-row"][data-path="cloud"]');
    // The rows take the choice at their next view (at most two a second): the row may still
    // show the keep it was listed with when the select already shows the choice.
    await page.locator('[data-testid="folder-row"][data-path="cloud"][data-keep="online"]').waitFor({ timeout: 10_000 });
    await expect.poll(() => cloudRow.getByTestId('folder-status').textContent(), { timeout: 10_000 }).toBe('Online only · 3 files');
    expect(await overallProgress(page)).toEqual({ done: 0, total: 0 });
    expect(await served()).toBe(before);

    // Keep one folder: exactly its blocks come, and the workspace counts as in sync with them.
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: 1024 * MiB });
    await page.locator('[data-testid="folder-row"][data-path="keep"] [data-testid="keep-select"]').selectOption('keep');
    await waitForAllSynced(page, kept.length);
    expect(await served()).toBe(before + kept.length);

    await openFolder(page, 'cloud');
    await scrollToRow(page, 'cloud/big.bin');
    const bigRow = fileRow(page, 'cloud/big.bin');
    expect(await bigRow.getAttribute('data-status')).toBe('online');
    expect(await bigRow.getAttribute('data-online-only')).toBe('true');
    expect(await bigRow.locator('.cell-size').textContent()).toMatch(/^9\.\d MB$/);
    expect(await bigRow.getByTestId('file-status').textContent()).toBe('Online only');

    // Open through the file URL: exactly this file's blocks are fetched, the bytes are right.
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 20_000 });
    let mark = await served();
    const opened = await readFileUrl(page, 'cloud/big.bin');
    expect(opened).toEqual({ sha256: sha256(big), length: big.length, status: 200 });
    expect((await served()) - mark).toBe(big.length);
    // Its blocks are cached now: the row says it is on this device, a second open fetches nothing.
    await page.locator('[data-testid="file-row"][data-path="cloud/big.bin"][data-status="synced"]').waitFor();
    expect(await bigRow.getByTestId('file-status').textContent()).toBe('Online only · on this device now');
    mark = await served();
    expect((await readFileUrl(page, 'cloud/big.bin')).sha256).toBe(sha256(big));
    expect(await served()).toBe(mark);

    // A zip of an online-only folder fetches what it needs.
    await openFolder(page, 'cloud/notes');
    await page.getByTestId('download-zip').click();
    await page.getByTestId('notice-info').filter({ hasText: 'Saved notes.zip' }).waitFor({ timeout: 60_000 });
    const zipped = await zipEntries(page, 'notes.zip');
    expect([...zipped.keys()]).toEqual(['small.bin']);
    expect(sha256(zipped.get('small.bin')!)).toBe(sha256(small));

    // The blocks read for online-only files are in the cache's own bucket (not persisted), not in the kept store.
    // Seeded in order: keep/a.bin's one block, then cloud/big.bin's three.
    const [keptBlock, ...rest] = workspace.blocks.keys();
    const bigBlocks = rest.slice(0, 3);
    const cached = await blockFilesIn(page, 'cache');
    const keptStore = await blockFilesIn(page, 'default');
    for (const hash of bigBlocks) {
      expect(cached).toContain(hash);
      expect(keptStore).not.toContain(hash);
    }
    expect(keptStore).toContain(keptBlock);

    // The browser clearing the bucket (deleted here as it would be under storage pressure) is a
    // miss: the next open fetches the blocks again and the bytes are right.
    await page.evaluate(() => (navigator as unknown as { storageBuckets: { delete(name: string): Promise<void> } }).storageBuckets.delete('nearsync-online-cache'));
    mark = await served();
    expect((await readFileUrl(page, 'cloud/big.bin')).sha256).toBe(sha256(big));
    expect((await served()) - mark).toBe(big.length);
    for (const hash of bigBlocks) expect(await blockFilesIn(page, 'cache')).toContain(hash);

    // The cache is bounded: with a 1 MiB limit (as the worker reads it at start), the blocks
    // read so far are evicted; reading again fetches them again and the bytes are still right.
    await page.evaluate(async ({ ns, limit }) => {
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        const request = indexedDB.open('nearsync');
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      const tx = db.transaction('workspaces', 'readwrite');
      const store = tx.objectStore('workspaces');
      const record = await new Promise<Record<string, unknown>>((resolve) => {
        const get = store.get(ns);
        get.onsuccess = () => resolve(get.result as Record<string, unknown>);
      });
      store.put({ ...record, cacheLimitBytes: limit });
      await new Promise((resolve) => (tx.oncomplete = resolve));
      db.close();
    }, { ns: workspace.namespaceId, limit: MiB });
    await page.reload();
    await waitForRole(page, 'leader');
    await openFolder(page, 'cloud');
    await scrollToRow(page, 'cloud/big.bin');
    await page.locator('[data-testid="file-row"][data-path="cloud/big.bin"][data-status="online"]').waitFor({ timeout: 30_000 });
    const afterEviction = await blockFilesIn(page, 'cache');
    for (const hash of bigBlocks) expect(afterEviction).not.toContain(hash);
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 20_000 });
    mark = await served();
    expect((await readFileUrl(page, 'cloud/big.bin')).sha256).toBe(sha256(big));
    expect((await served()) - mark).toBe(big.length);
    // The kept folder never lost a block.
    await waitForAllSynced(page, kept.length);
    expect(await blockFilesIn(page, 'default')).toContain(keptBlock);

    // Save (the blob path) of an online-only file fetches it too.
    mark = await served();
    const saved = await saveFileAndHash(page, 'cloud/more.bin');
    expect(saved.sha256).toBe(sha256(more));
    expect((await served()) - mark).toBe(more.length);

    // Folder sync writes online-only files too, fetching them for the folder.
    mark = await served();
    await page.getByTestId('folder-sync-pick').click();
    await page.getByTestId('folder-sync-stop').waitFor();
    const expected = Object.fromEntries(FILES.map((file) => [file.path, sha256(file.bytes)]));
    await expect.poll(() => linkedFolderContents(page), { timeout: 90_000, interval: 250 }).toEqual(expected);
    // What the small cache no longer held came from the server for it.
    expect((await served()) - mark).toBeGreaterThan(0);
    await page.getByTestId('folder-sync-stop').click();

    // Keeping the online-only folder: its files sync, and blocks that sat in the cache move to
    // the kept store (a cleared cache must never take a kept file's block).
    await openFolder(page, '');
    await page.locator('[data-testid="folder-row"][data-path="cloud"] [data-testid="keep-select"]').selectOption('keep');
    await waitForAllSynced(page, kept.length + big.length + small.length + more.length);
    // The move runs after the policy change is applied: wait for it, block by block.
    const all = [...workspace.blocks.keys()];
    for (let settled = false; !settled; ) {
      const keptNow = new Set(await blockFilesIn(page, 'default'));
      const cacheNow = new Set(await blockFilesIn(page, 'cache'));
      settled = all.every((hash) => keptNow.has(hash) && !cacheNow.has(hash));
      if (!settled) await page.waitForTimeout(200);
    }
  });
});
