import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { formatBytes } from '../../src/app/format.ts';
import { E2eHarness, sha256, type TestServer } from './harness.ts';
import { manyFilesBytes, seedManyFiles, type ManyFilesWorkspace } from './support/seed-many-files.ts';
import { createWorkspace, fileRowPaths, joinWithLink, openFolder, saveFileAndHash, waitForAllSynced } from './ui.ts';

/**
 * The folder view on a workspace of 10,000 files, joined by a fresh browser: folders with their
 * totals, a folder of 2,000 files scrolled to its end, sort, filter, breadcrumb, and a DOM that
 * holds only the rows on screen throughout.
 */

const FILES = 10_000;
const FLAT = 2_000;
/** 8,000 files in project-<0..9>/part-<0..9>/, then 2,000 directly in flat/. */
const pathOf = (index: number): string =>
  index < FILES - FLAT
    ? `project-${index % 10}/part-${Math.floor(index / 10) % 10}/file-${String(index).padStart(6, '0')}.txt`
    : `flat/item-${String(index - (FILES - FLAT)).padStart(5, '0')}.dat`;

/** Rows in the DOM now: the viewport's worth plus a margin, whatever the folder holds. */
const MAX_DOM_ROWS = 60;

let harness: E2eHarness;
let server: TestServer;
let workspace: ManyFilesWorkspace;
let page: Page;

async function domRows(): Promise<number> {
  return page.locator('[data-testid="file-row"], [data-testid="folder-row"]').count();
}

async function listingTotal(): Promise<number> {
  return Number(await page.getByTestId('file-table').getAttribute('data-total'));
}

beforeAll(async () => {
  harness = await E2eHarness.start();
}, 120_000);

afterAll(async () => {
  await harness?.close();
});

describe('the folder view of a 10,000-file workspace', () => {
  beforeAll(async () => {
    server = await harness.startServer();
    workspace = await seedManyFiles(server.origin, FILES, { pathOf });
    page = await (await harness.newBrowser()).newPage();
    page.on('pageerror', (error) => console.error('page error:', error.message));
  }, 600_000);

  test('folders come first with their size and file count; navigation works while the files arrive', { timeout: 300_000 }, async () => {
    await joinWithLink(page, workspace.shareLink, workspace.namespaceId);
    const flatRow = page.locator('[data-testid="folder-row"][data-path="flat"]');
    await flatRow.waitFor({ timeout: 120_000 });
    // Open a folder and come back before the join has finished: the view must answer meanwhile.
    await openFolder(page, 'project-3/part-4');
    expect(await page.locator('[data-testid="breadcrumb-item"]').count()).toBe(3);
    await page.locator('[data-testid="breadcrumb-item"][data-path=""]').click();
    await page.locator('[data-testid="file-table"][data-folder=""]').waitFor();

    await waitForAllSynced(page, workspace.totalBytes, 240_000);
    expect(await fileRowPaths(page)).toEqual(['flat', ...Array.from({ length: 10 }, (_, i) => `project-${i}`)]);
    const project = page.locator('[data-testid="folder-row"][data-path="project-7"]');
    expect(await project.getAttribute('data-status')).toBe('synced');
    expect(await project.getByTestId('folder-status').textContent()).toContain('800 files');
    const flatBytes = Array.from({ length: FLAT }, (_, i) => manyFilesBytes(FILES - FLAT + i).length).reduce((a, b) => a + b, 0);
    expect(await flatRow.locator('.cell-size').getAttribute('title')).toBe(`${FLAT} files`);
    expect(await flatRow.locator('.cell-size').textContent()).toBe(formatBytes(flatBytes));
    expect(await domRows()).toBeLessThanOrEqual(MAX_DOM_ROWS);
  });

  test('a folder of 2,000 files scrolls to its last row with a bounded DOM', { timeout: 120_000 }, async () => {
    await openFolder(page, 'flat');
    expect(await listingTotal()).toBe(FLAT);
    expect((await fileRowPaths(page))[0]).toBe('flat/item-00000.dat');
    expect(await domRows()).toBeLessThanOrEqual(MAX_DOM_ROWS);
    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    await page.locator('[data-testid="file-row"][data-path="flat/item-01999.dat"]').waitFor();
    expect(await domRows()).toBeLessThanOrEqual(MAX_DOM_ROWS);
    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight / 2));
    await page.locator('[data-testid="file-row"][data-path="flat/item-01000.dat"]').waitFor();
    expect(await domRows()).toBeLessThanOrEqual(MAX_DOM_ROWS);
  });

  test('sorts by size and by modified, both ways', { timeout: 120_000 }, async () => {
    await openFolder(page, 'flat');
    const sizes = Array.from({ length: FLAT }, (_, i) => ({ path: pathOf(FILES - FLAT + i), size: manyFilesBytes(FILES - FLAT + i).length }));
    const largest = [...sizes].sort((a, b) => b.size - a.size || a.path.localeCompare(b.path))[0];
    await page.getByTestId('sort-size').click();
    await expectFirstRow(largest.path);
    expect(await page.getByTestId('sort-size').locator('..').getAttribute('aria-sort')).toBe('descending');
    const smallest = [...sizes].sort((a, b) => a.size - b.size || a.path.localeCompare(b.path))[0];
    await page.getByTestId('sort-size').click();
    await expectFirstRow(smallest.path);
    // The seed gives file i the mtime 1_700_000_000_000 + i s: the newest is the last one.
    await page.getByTestId('sort-modified').click();
    await expectFirstRow('flat/item-01999.dat');
    await page.getByTestId('sort-name').click();
    await expectFirstRow('flat/item-00000.dat');
  });

  test('filters by name anywhere below the open folder, and a saved file is byte-exact', { timeout: 120_000 }, async () => {
    await openFolder(page, '');
    await page.getByTestId('file-filter').fill('file-004217');
    await page.waitForFunction(() => document.querySelector('[data-testid="file-table"]')?.getAttribute('data-total') === '1');
    expect(await fileRowPaths(page)).toEqual([pathOf(4217)]);
    expect(await page.locator('[data-testid="file-row"] .file-name').textContent()).toBe(pathOf(4217));
    await page.getByTestId('file-filter').fill('no such name');
    await page.getByTestId('folder-empty').filter({ hasText: 'no such name' }).waitFor();
    await page.getByTestId('file-filter').fill('');
    await page.waitForFunction(() => document.querySelector('[data-testid="file-table"]')?.getAttribute('data-total') === '11');

    const saved = await saveFileAndHash(page, pathOf(4217));
    expect(saved.sha256).toBe(sha256(manyFilesBytes(4217)));
  });
});

describe('uploading a folder of 2,000 small files', () => {
  test('goes up in batch uploads and batch commits with a running count, and every file lands in its folder', { timeout: 300_000 }, async () => {
    const uploadServer = await harness.startServer();
    const count = 2_000;
    const tree: Record<string, Uint8Array> = {};
    for (let i = 0; i < count; i++) tree[`sub-${i % 4}/note-${String(i).padStart(4, '0')}.txt`] = manyFilesBytes(50_000 + i);
    const folder = await harness.writeTempTree('drop', tree);
    const uploader = await (await harness.newBrowser()).newPage();
    uploader.on('pageerror', (error) => console.error('page error:', error.message));
    await createWorkspace(uploader, uploadServer.origin, 'Upload many');
    const before = await uploadServer.metrics();
    const started = Date.now();
    await uploader.getByTestId('folder-input').setInputFiles(folder);
    // The page hands the drop to the worker in parts; the first announces the whole drop, so
    // the count shown is the drop's while files are still being handed over.
    await uploader.waitForFunction(() => Number(document.querySelector('[data-testid="upload-totals"]')?.getAttribute('data-files')) > 0);
    const firstTotals = uploader.getByTestId('upload-totals');
    expect(await firstTotals.getAttribute('data-files')).toBe(String(count));
    await uploader.waitForFunction(
      (expected) => document.querySelector('[data-testid="upload-totals"]')?.getAttribute('data-done-files') === String(expected),
      count,
      { timeout: 240_000, polling: 250 },
    );
    console.log(`uploaded ${count} small files in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const totals = uploader.getByTestId('upload-totals');
    expect(await totals.getAttribute('data-failed-files')).toBe('0');
    expect(await totals.textContent()).toContain(`${count.toLocaleString('en-US')} of ${count.toLocaleString('en-US')} files uploaded`);
    // The page holds a bounded tail of upload rows, not one per file.
    expect(await uploader.locator('[data-testid="upload-row"]').count()).toBeLessThanOrEqual(150);
    const after = await uploadServer.metrics();
    expect(after.commits - before.commits).toBe(count);
    expect(after.commitBatches - before.commitBatches).toBeLessThanOrEqual(4);
    // The blocks went up in a few batch uploads (about 3 MB in all), not one PUT per file.
    expect(after.blockBatchesReceived - before.blockBatchesReceived).toBeGreaterThanOrEqual(1);
    expect(after.blockBatchesReceived - before.blockBatchesReceived).toBeLessThanOrEqual(8);
    expect(await singleBlockPuts(uploadServer)).toBe(0);

    await openFolder(uploader, 'drop/sub-3');
    await uploader.waitForFunction(() => document.querySelector('[data-testid="file-table"]')?.getAttribute('data-total') === '500');
    expect((await fileRowPaths(uploader))[0]).toBe('drop/sub-3/note-0003.txt');
  });
});

/** Single block uploads (PUT /api/v1/blocks/:hash) the server has answered, from its Prometheus scrape. */
async function singleBlockPuts(server: TestServer): Promise<number> {
  const text = await (await fetch(`${server.origin}/metrics`)).text();
  let puts = 0;
  for (const match of text.matchAll(/^nearsync_http_requests_total\{method="PUT",route="\/api\/v1\/blocks\/:hash",status="\d+"\} (\d+)$/gm)) puts += Number(match[1]);
  return puts;
}

async function expectFirstRow(path: string): Promise<void> {
  await page.waitForFunction(
    (expected) => document.querySelector('[data-testid="file-row"][aria-rowindex="1"]')?.getAttribute('data-path') === expected,
    path,
    { timeout: 10_000 },
  );
}
