import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { E2eHarness, randomBuffer, sha256, type TestServer } from './harness.ts';
import {
  createWorkspace,
  deleteFile,
  fileRow,
  joinWithLink,
  openFolder,
  saveFileAndHash,
  scrollToRow,
  showFileFolder,
  uploadThroughPicker,
  waitForFileGone,
  waitForFileStatus,
  waitForUploadsDone,
} from './ui.ts';

/**
 * Version history in the browser against a real server: the Versions panel (list, Open of an
 * old version fetched from the server, Restore), Recently deleted, and the notice a user gets
 * when their upload lost a race and was kept as a conflicted copy.
 */

const MiB = 1024 * 1024;
let harness: E2eHarness;

beforeAll(async () => {
  harness = await E2eHarness.start();
});

afterAll(async () => {
  await harness?.close();
});

/** A browser whose device label (the peer label) is `label`. */
async function browserLabelled(label: string): Promise<BrowserContext> {
  const context = await harness.newBrowser();
  await context.addInitScript((value) => {
    try {
      localStorage.setItem('nearsync:peer-label', value);
    } catch {
      // about:blank and blob: tabs have no storage of this origin.
    }
  }, label);
  return context;
}

/** This browser's member token for `ns`, read from its IndexedDB (to check the journal beside the UI). */
async function tokenOf(page: Page, ns: string): Promise<string> {
  return page.evaluate(
    (id) =>
      new Promise<string>((resolve, reject) => {
        const open = indexedDB.open('nearsync');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const get = open.result.transaction('workspaces').objectStore('workspaces').get(id);
          get.onsuccess = () => resolve((get.result as { token: string }).token);
          get.onerror = () => reject(get.error);
        };
      }),
    ns,
  );
}

/** The bytes a blob: tab shows, hashed in that tab. */
async function sha256OfTab(tab: Page): Promise<string> {
  return tab.evaluate(async () => {
    const bytes = await (await fetch(location.href)).arrayBuffer();
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return [...digest].map((byte) => byte.toString(16).padStart(2, '0')).join('');
  });
}

async function openVersions(page: Page, path: string): Promise<void> {
  await showFileFolder(page, path);
  await scrollToRow(page, path);
  await fileRow(page, path).getByTestId('versions-file').click();
  await page.getByRole('dialog', { name: `Versions of ${path}` }).waitFor();
}

/** Waits until `count` upload rows of `path` exist and all are done (a later upload of a path adds a row). */
async function waitForUploadRowsDone(page: Page, path: string, count: number, timeout = 60_000): Promise<void> {
  await page.waitForFunction(
    ([wanted, expected]) => {
      const rows = [...document.querySelectorAll('[data-testid="upload-row"]')].filter((row) => row.getAttribute('data-path') === wanted);
      if (rows.some((row) => row.getAttribute('data-state') === 'failed')) throw new Error(`upload of ${wanted} failed`);
      return rows.length === expected && rows.every((row) => row.getAttribute('data-state') === 'done');
    },
    [path, count] as const,
    { timeout, polling: 100 },
  );
}

/** Saves `path` until its bytes hash to `expected` (the new version reaches this browser through the journal). */
async function waitForContent(page: Page, path: string, expected: string, timeout = 30_000): Promise<void> {
  const deadline = Date.now() + timeout;
  let seen = '';
  while (Date.now() < deadline) {
    await waitForFileStatus(page, path, 'synced', Math.max(1, deadline - Date.now()));
    seen = (await saveFileAndHash(page, path)).sha256;
    if (seen === expected) return;
    await page.waitForTimeout(250);
  }
  expect(seen).toBe(expected);
}

describe('versions, recently deleted and conflicted copies in the browser', () => {
  let server: TestServer;
  let pageA: Page;
  let pageB: Page;
  let namespaceId: string;

  // Two blocks of text (Chromium downloads a text/plain blob whose bytes look binary instead of showing it).
  const v1 = Buffer.from(randomBuffer(4 * MiB).toString('base64').slice(0, 5 * MiB + 17) + '\nünïcødé ✓\n', 'utf8');
  const v2 = Buffer.from('second version\n');
  const v3 = Buffer.from('third version, the current one\n');

  beforeAll(async () => {
    server = await harness.startServer();
    pageA = await (await browserLabelled('Ann laptop')).newPage();
    pageB = await (await browserLabelled('Bob desk')).newPage();
    for (const [page, label] of [[pageA, 'A'], [pageB, 'B']] as const) {
      page.on('pageerror', (error) => console.error(`[${label}] page error:`, error.message));
    }
    const created = await createWorkspace(pageA, server.origin, 'History');
    namespaceId = created.namespaceId;
    await joinWithLink(pageB, created.shareLink, namespaceId);
  });

  test('a file replaced twice has three versions; an old one opens byte-exact and restores', { timeout: 120_000 }, async () => {
    for (const bytes of [v1, v2, v3]) {
      await uploadThroughPicker(pageA, [await harness.writeTempFile('plan.txt', bytes)]);
      await waitForUploadsDone(pageA, ['plan.txt']);
      await waitForContent(pageA, 'plan.txt', sha256(bytes));
    }
    // B joined before: it synced only what is live (v3), so v1's blocks come from the server.
    await waitForContent(pageB, 'plan.txt', sha256(v3));

    await openVersions(pageB, 'plan.txt');
    const rows = pageB.getByTestId('version-row');
    await expect.poll(() => rows.count()).toBe(3);
    expect(await rows.getByTestId('version-device').allTextContents()).toEqual(['Ann laptop', 'Ann laptop', 'Ann laptop']);
    expect(await rows.evaluateAll((items) => items.map((item) => item.getAttribute('data-current')))).toEqual(['true', 'false', 'false']);
    const oldest = rows.nth(2);
    const oldSjid = Number(await oldest.getAttribute('data-sjid'));

    const [tab] = await Promise.all([pageB.context().waitForEvent('page'), oldest.getByTestId('version-open').click()]);
    await tab.waitForURL(/^blob:/).catch(async (error: unknown) => {
      throw new Error(`the version did not open (${String(error)}); the panel says: ${await pageB.getByTestId('versions-panel').textContent()}`);
    });
    expect(await sha256OfTab(tab)).toBe(sha256(v1));
    await tab.close();

    // Escape closes the panel and gives focus back to the row's Versions button.
    await pageB.bringToFront();
    await pageB.keyboard.press('Escape');
    await pageB.getByTestId('versions-panel').waitFor({ state: 'detached' });
    expect(await pageB.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('versions-file');

    // Keyboard only: open the panel again, reach v1's Restore and press it.
    await pageB.keyboard.press('Enter');
    await pageB.getByRole('dialog', { name: 'Versions of plan.txt' }).waitFor();
    await expect.poll(() => rows.count()).toBe(3);
    await rows.nth(2).getByTestId('version-restore').focus();
    await pageB.keyboard.press('Enter');
    await pageB.getByTestId('versions-status').filter({ hasText: 'it is now the current version' }).waitFor();
    await expect.poll(() => rows.count()).toBe(4);
    expect(await rows.first().getByTestId('version-device').textContent()).toBe('Bob desk');
    await pageB.getByTestId('dialog-close').click();

    // The journal has a new entry with v1's blocks, committed by B.
    const token = await tokenOf(pageA, namespaceId);
    const history = await (
      await fetch(`${server.origin}/api/v1/ns/${namespaceId}/history?path=plan.txt`, { headers: { authorization: `Bearer ${token}` } })
    ).json();
    const [restored] = history.versions;
    const original = history.versions.find((version: { sjid: number }) => version.sjid === oldSjid);
    expect(restored.sjid).toBeGreaterThan(oldSjid);
    expect(restored.blocks).toEqual(original.blocks);
    expect(restored).toMatchObject({ size: v1.length, deleted: false, device: 'Bob desk' });

    await waitForContent(pageA, 'plan.txt', sha256(v1));
    await waitForContent(pageB, 'plan.txt', sha256(v1));
  });

  test('a deleted file is listed in Recently deleted and restores', { timeout: 90_000 }, async () => {
    const bytes = Buffer.from('soon deleted, then back\n');
    await uploadThroughPicker(pageA, [await harness.writeTempFile('gone.txt', bytes)]);
    await waitForUploadsDone(pageA, ['gone.txt']);
    await waitForFileStatus(pageA, 'gone.txt', 'synced');
    await deleteFile(pageA, 'gone.txt');
    await waitForFileGone(pageA, 'gone.txt');
    await waitForFileGone(pageB, 'gone.txt');

    await pageB.getByTestId('open-recently-deleted').click();
    const panel = pageB.getByRole('dialog', { name: 'Recently deleted' });
    await panel.waitFor();
    const row = pageB.locator('[data-testid="deleted-row"][data-path="gone.txt"]');
    await row.waitFor();
    expect(await row.textContent()).toContain('by Ann laptop');
    await row.getByTestId('deleted-restore').click();
    await pageB.getByTestId('deleted-status').filter({ hasText: 'Restored gone.txt' }).waitFor();
    expect(await row.count()).toBe(0);
    await pageB.keyboard.press('Escape');
    await panel.waitFor({ state: 'detached' });
    expect(await pageB.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('open-recently-deleted');

    await waitForContent(pageA, 'gone.txt', sha256(bytes));
    await waitForContent(pageB, 'gone.txt', sha256(bytes));
  });

  test('restoring a deleted file that was written again meanwhile keeps both, the restore as a conflicted copy', { timeout: 90_000 }, async () => {
    const old = Buffer.from('the deleted version\n');
    const fresh = Buffer.from('written again after the deletion\n');
    await uploadThroughPicker(pageA, [await harness.writeTempFile('again.txt', old)]);
    await waitForUploadsDone(pageA, ['again.txt']);
    await waitForFileStatus(pageA, 'again.txt', 'synced');
    await deleteFile(pageA, 'again.txt');
    await waitForFileGone(pageA, 'again.txt');

    // B lists it as deleted; A writes the path again before B presses Restore.
    await pageB.getByTestId('open-recently-deleted').click();
    const row = pageB.locator('[data-testid="deleted-row"][data-path="again.txt"]');
    await row.waitFor();
    await uploadThroughPicker(pageA, [await harness.writeTempFile('again.txt', fresh)]);
    // The earlier upload's row is done already: wait for the new bytes instead.
    await waitForContent(pageA, 'again.txt', sha256(fresh));
    await row.getByTestId('deleted-restore').click();
    await pageB.waitForFunction(() => {
      const status = document.querySelector('[data-testid="deleted-status"]')?.textContent ?? '';
      return status.startsWith('Restored') || status.includes('meanwhile') || !document.querySelector('[data-testid="deleted-error"]')?.hasAttribute('hidden');
    });
    const said = `${await pageB.getByTestId('deleted-status').textContent()} ${await pageB.getByTestId('deleted-error').textContent()}`;
    expect(said).toContain('again.txt was written again meanwhile');
    const copy = /restored as (.+)\.\s/.exec(said)?.[1];
    expect(copy).toMatch(/^again \(conflicted copy \d{4}-\d\d-\d\d \d{6} Bob desk\)\.txt$/);
    await pageB.keyboard.press('Escape');
    await waitForContent(pageB, 'again.txt', sha256(fresh));
    await waitForContent(pageB, copy!, sha256(old));
  });

  test('two browsers replace one file at once: both versions stay, and the one that lost is told where its version went', { timeout: 120_000 }, async () => {
    const base = Buffer.from('base version\n');
    await uploadThroughPicker(pageA, [await harness.writeTempFile('shared.txt', base)]);
    await waitForUploadsDone(pageA, ['shared.txt']);
    await waitForContent(pageA, 'shared.txt', sha256(base));
    await waitForContent(pageB, 'shared.txt', sha256(base));

    const fromA = Buffer.from('edited in A\n');
    const fromB = Buffer.from('edited in B, a longer line\n');
    const [fileA, fileB] = await Promise.all([harness.writeTempFile('shared.txt', fromA), harness.writeTempFile('shared.txt', fromB)]);
    await Promise.all([uploadThroughPicker(pageA, [fileA]), uploadThroughPicker(pageB, [fileB])]);
    // A uploaded shared.txt before (its row is done already): wait for both rows of A, one of B.
    await Promise.all([waitForUploadRowsDone(pageA, 'shared.txt', 2), waitForUploadRowsDone(pageB, 'shared.txt', 1)]);

    // Exactly one upload lost the race; its tab names both files.
    const conflicted = async (page: Page) =>
      page.locator('[data-testid="upload-row"][data-path="shared.txt"]').first().getAttribute('data-conflicted-copy');
    const [copyA, copyB] = [await conflicted(pageA), await conflicted(pageB)];
    expect([copyA, copyB].filter((copy) => copy !== null)).toHaveLength(1);
    const [loser, winner, copy, loserBytes, winnerBytes] = copyA !== null ? [pageA, pageB, copyA, fromA, fromB] : [pageB, pageA, copyB!, fromB, fromA];
    expect(copy).toMatch(/^shared \(conflicted copy \d{4}-\d\d-\d\d \d{6} (Ann laptop|Bob desk)\)\.txt$/);
    const notice = loser.getByTestId('notice-warning').filter({ hasText: copy });
    await notice.waitFor();
    expect(await notice.textContent()).toContain('“shared.txt” was changed on another device');
    expect(await winner.getByTestId('notice-warning').count()).toBe(0);

    // Both versions are ordinary files in both browsers.
    for (const page of [pageA, pageB]) {
      await openFolder(page, '');
      await waitForContent(page, 'shared.txt', sha256(winnerBytes));
      await waitForContent(page, copy, sha256(loserBytes));
    }
    // shared.txt's history: the base and the winner; the copy has its own.
    await openVersions(loser, 'shared.txt');
    const rows = loser.getByTestId('version-row');
    await expect.poll(() => rows.count()).toBe(2);
    await loser.keyboard.press('Escape');
  });

  test('a failure says what failed and why', { timeout: 60_000 }, async () => {
    // The server refuses the list (as it would a token removed from the workspace).
    const refuse = '**/api/v1/ns/*/deleted*';
    await pageB.context().route(refuse, (route) =>
      route.fulfill({ status: 403, contentType: 'application/json', body: JSON.stringify({ error: 'forbidden', message: 'this token is not a member of the workspace' }) }),
    );
    try {
      await pageB.getByTestId('open-recently-deleted').click();
      const problem = pageB.getByTestId('deleted-error');
      await problem.waitFor();
      const text = (await problem.textContent()) ?? '';
      expect(text).toMatch(/^Could not list the deleted files: .*not a member of the workspace/);
      await pageB.keyboard.press('Escape');
    } finally {
      await pageB.context().unroute(refuse);
    }
  });

  test('long histories and deleted lists page back with before', { timeout: 90_000 }, async () => {
    // 101 versions of one file and 101 deleted files, committed over the API (the UI pages at 100).
    const token = await tokenOf(pageA, namespaceId);
    const call = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`${server.origin}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
      return response.json();
    };
    const bytes = 'one block\n';
    const hash = sha256(Buffer.from(bytes));
    await call('PUT', `/blocks/${hash}`, bytes);
    const write = (path: string, mtime: number) => ({ path, size: bytes.length, mtime, blocks: [hash], device: 'Script' });
    await call('POST', `/ns/${namespaceId}/commits`, { commits: Array.from({ length: 101 }, (_, i) => write('many.txt', 1_700_000_000_000 + i)) });
    const names = Array.from({ length: 101 }, (_, i) => `old/${String(i).padStart(3, '0')}.txt`);
    await call('POST', `/ns/${namespaceId}/commits`, { commits: names.map((path) => write(path, 1)) });
    await call('POST', `/ns/${namespaceId}/commits`, { commits: names.map((path) => ({ path, size: 0, mtime: 2, blocks: [], deleted: true, device: 'Script' })) });

    await waitForFileStatus(pageB, 'many.txt', 'synced');
    await openVersions(pageB, 'many.txt');
    const rows = pageB.getByTestId('version-row');
    await expect.poll(() => rows.count()).toBe(100);
    // Rows say when the server took each commit (today); the devices' 2023 clocks show as a detail.
    const first = rows.first();
    expect((await first.locator('.version-when').innerText()).split('\n')[0]).toContain(String(new Date().getFullYear()));
    expect(await first.getByTestId('version-mtime').innerText()).toMatch(/^modified .*2023.* on the device$/);
    await pageB.getByTestId('versions-more').click();
    await expect.poll(() => rows.count()).toBe(101);
    expect(await pageB.getByTestId('versions-more').isHidden()).toBe(true);
    const sjids = await rows.evaluateAll((items) => items.map((item) => Number(item.getAttribute('data-sjid'))));
    expect(sjids).toEqual([...sjids].sort((a, b) => b - a));
    expect(new Set(sjids).size).toBe(101);
    await pageB.keyboard.press('Escape');

    await openFolder(pageB, '');
    await pageB.getByTestId('open-recently-deleted').click();
    const deleted = pageB.getByTestId('deleted-row');
    await expect.poll(() => deleted.count()).toBe(100);
    await pageB.getByTestId('deleted-more').click();
    // The 101 files, then what earlier tests deleted and did not restore (none: both came back).
    await expect.poll(() => deleted.count()).toBe(101);
    const paths = await deleted.evaluateAll((items) => items.map((item) => item.getAttribute('data-path')));
    expect(paths).toEqual([...names].reverse());
    await pageB.keyboard.press('Escape');
  });
});
