import type { Locator, Page } from 'playwright-core';
import { sha256OfFile } from './harness.ts';

/** Drives the nearsync UI through its data-testid / data-* attributes, as a user would. */

type FileStatus = 'synced' | 'syncing' | 'waiting';
type SyncRole = 'leader' | 'follower' | 'connecting';

function cssString(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function rowSelector(path: string, status?: FileStatus): string {
  const base = `[data-testid="file-row"][data-path=${cssString(path)}]`;
  return status ? `${base}[data-status="${status}"]` : base;
}

export function fileRow(page: Page, path: string): Locator {
  return page.locator(rowSelector(path));
}

function parentFolder(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash === -1 ? '' : path.slice(0, slash);
}

/**
 * Opens `folder` in the folder view as a user would: the breadcrumb's first item, then each
 * folder's row in turn (waiting for it to arrive). A no-op when it is already open.
 */
export async function openFolder(page: Page, folder: string, timeout = 60_000): Promise<void> {
  const table = page.getByTestId('file-table');
  if ((await table.getAttribute('data-folder', { timeout }).catch(() => null)) === folder) return;
  await page.locator('[data-testid="breadcrumb-item"][data-path=""]').click({ timeout });
  let prefix = '';
  for (const segment of folder ? folder.split('/') : []) {
    prefix = prefix ? `${prefix}/${segment}` : segment;
    await page.locator(`[data-testid="folder-row"][data-path=${cssString(prefix)}] [data-testid="open-folder"]`).click({ timeout });
  }
  await page.locator(`[data-testid="file-table"][data-folder=${cssString(folder)}]`).waitFor({ timeout });
}

/** Opens the folder that holds `path`, so that its row can appear. */
export async function showFileFolder(page: Page, path: string, timeout = 60_000): Promise<void> {
  await openFolder(page, parentFolder(path), timeout);
}

/**
 * Scrolls the page, as a user would, until the row of `path` is rendered (the folder view
 * renders only the rows on screen). Leaves it alone when the row is absent from the listing.
 */
export async function scrollToRow(page: Page, path: string): Promise<void> {
  const row = fileRow(page, path);
  if ((await row.count()) > 0) return row.scrollIntoViewIfNeeded();
  await page.evaluate(() => window.scrollTo(0, 0));
  for (let step = 0; step < 1000; step++) {
    if ((await row.count()) > 0) return row.scrollIntoViewIfNeeded();
    const moved = await page.evaluate(() => {
      const before = window.scrollY;
      window.scrollBy(0, Math.floor(window.innerHeight * 0.8));
      return window.scrollY !== before;
    });
    // Give the view a frame and its worker a round trip to render the rows now on screen.
    await page.waitForTimeout(50);
    if (!moved && (await row.count()) === 0) return;
  }
}

/** Creates a workspace from the home page; resolves with its id and share link once the page shows them. */
export async function createWorkspace(page: Page, origin: string, name: string): Promise<{ namespaceId: string; shareLink: string }> {
  await page.goto(`${origin}/`);
  await page.getByTestId('new-workspace-name').fill(name);
  await page.getByTestId('create-workspace').click();
  await page.waitForURL(/\/w\/[A-Za-z0-9_-]+$/);
  const namespaceId = new URL(page.url()).pathname.split('/')[2];
  await page.getByTestId('workspace-name').filter({ hasText: name }).waitFor();
  return { namespaceId, shareLink: await readShareLink(page) };
}

export async function readShareLink(page: Page): Promise<string> {
  const input = page.getByTestId('share-link');
  await page.waitForFunction(
    () => ((document.querySelector('[data-testid="share-link"]') as HTMLInputElement | null)?.value ?? '').includes('invite='),
  );
  return input.inputValue();
}

/** Opens a share link in `page` and waits until the app has joined and moved to /w/<ns>. */
export async function joinWithLink(page: Page, shareLink: string, namespaceId: string): Promise<void> {
  await page.goto(shareLink);
  await page.waitForURL((url) => url.pathname === `/w/${namespaceId}` && url.hash === '');
  await page.getByTestId('sync-role').waitFor();
}

export async function uploadThroughPicker(page: Page, filePaths: string[]): Promise<void> {
  await page.getByTestId('file-input').setInputFiles(filePaths);
}

export async function waitForUploadsDone(page: Page, paths: string[], timeout = 60_000): Promise<void> {
  for (const path of paths) {
    const selector = `[data-testid="upload-row"][data-path=${cssString(path)}]`;
    await page.waitForFunction(
      (sel) => {
        const row = document.querySelector(sel);
        const state = row?.getAttribute('data-state');
        if (state === 'failed') throw new Error(`upload failed: ${row?.textContent ?? ''}`);
        return state === 'done';
      },
      selector,
      { timeout, polling: 100 },
    );
  }
}

export async function waitForFileStatus(page: Page, path: string, status: FileStatus, timeout = 60_000): Promise<void> {
  await showFileFolder(page, path, timeout);
  const deadline = Date.now() + timeout;
  await scrollToRow(page, path);
  await page.locator(rowSelector(path, status)).waitFor({ timeout: Math.max(1, deadline - Date.now()) });
}

export async function waitForFileGone(page: Page, path: string, timeout = 10_000): Promise<void> {
  await showFileFolder(page, path, timeout).catch(() => undefined);
  await fileRow(page, path).waitFor({ state: 'detached', timeout });
}

/** Clicks Save on a file's row and returns the SHA-256 of the bytes the browser downloaded. */
export async function saveFileAndHash(page: Page, path: string): Promise<{ sha256: string; suggestedName: string }> {
  await showFileFolder(page, path);
  await scrollToRow(page, path);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    fileRow(page, path).getByTestId('save-file').click(),
  ]);
  const failure = await download.failure();
  if (failure) throw new Error(`download of ${path} failed: ${failure}`);
  const downloaded = await download.path();
  return { sha256: await sha256OfFile(downloaded), suggestedName: download.suggestedFilename() };
}

export async function renameFile(page: Page, from: string, to: string): Promise<void> {
  await showFileFolder(page, from);
  await scrollToRow(page, from);
  await fileRow(page, from).getByTestId('rename-file').click();
  const input = fileRow(page, from).getByTestId('rename-input');
  await input.fill(to);
  await input.press('Enter');
}

export async function deleteFile(page: Page, path: string): Promise<void> {
  await showFileFolder(page, path);
  await scrollToRow(page, path);
  page.once('dialog', (dialog) => void dialog.accept());
  await fileRow(page, path).getByTestId('delete-file').click();
}

/** Paths of the rows the open folder shows, in screen order (folders first). */
export async function fileRowPaths(page: Page): Promise<string[]> {
  return page
    .locator('[data-testid="file-row"], [data-testid="folder-row"]')
    .evaluateAll((rows) =>
      rows
        .map((row) => ({ path: row.getAttribute('data-path') ?? '', index: Number(row.getAttribute('aria-rowindex')) }))
        .sort((a, b) => a.index - b.index)
        .map((row) => row.path),
    );
}

export async function overallProgress(page: Page): Promise<{ done: number; total: number }> {
  return page.getByTestId('overall-progress').evaluate((element) => ({
    done: Number(element.getAttribute('data-done-bytes') ?? 'NaN'),
    total: Number(element.getAttribute('data-total-bytes') ?? 'NaN'),
  }));
}

export async function waitForRole(page: Page, role: SyncRole, timeout = 20_000): Promise<void> {
  await page.locator(`[data-testid="sync-role"][data-role="${role}"]`).waitFor({ timeout });
}

export async function waitForAllSynced(page: Page, totalBytes: number, timeout = 60_000): Promise<void> {
  await page.waitForFunction(
    (expected) => {
      const element = document.querySelector('[data-testid="overall-progress"]');
      return (
        element !== null &&
        Number(element.getAttribute('data-total-bytes')) === expected &&
        Number(element.getAttribute('data-done-bytes')) === expected
      );
    },
    totalBytes,
    { timeout, polling: 100 },
  );
}
