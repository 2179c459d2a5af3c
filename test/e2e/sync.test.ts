import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { E2eHarness, randomBuffer, sha256, type TestServer } from './harness.ts';
import {
  createWorkspace,
  deleteFile,
  fileRow,
  fileRowPaths,
  openFolder,
  joinWithLink,
  overallProgress,
  readShareLink,
  renameFile,
  saveFileAndHash,
  uploadThroughPicker,
  waitForAllSynced,
  waitForFileGone,
  waitForFileStatus,
  waitForRole,
  waitForUploadsDone,
} from './ui.ts';

const MiB = 1024 * 1024;
const BLOCK_SIZE = 4 * MiB;
const blockCount = (size: number): number => Math.ceil(size / BLOCK_SIZE);

let harness: E2eHarness;

beforeAll(async () => {
  harness = await E2eHarness.start();
});

afterAll(async () => {
  await harness?.close();
});

/** Surfaces page errors in the test output: a blank page is otherwise hard to diagnose. */
function reportPageErrors(page: Page, label: string): void {
  page.on('pageerror', (error) => console.error(`[${label}] page error:`, error.message));
}

describe('two browsers share a workspace', () => {
  let server: TestServer;
  let pageA: Page;
  let pageB: Page;
  let namespaceId: string;

  const big = { name: 'big.bin', bytes: randomBuffer(12 * MiB + 123) };
  const text = { name: 'notes.txt', bytes: Buffer.from('Meeting notes\nline two: ünïcødé ✓\n', 'utf8') };
  const empty = { name: 'empty.txt', bytes: Buffer.alloc(0) };
  const originals = [big, text, empty];

  beforeAll(async () => {
    server = await harness.startServer();
  });

  test('B joins with the share link and gets byte-identical copies of A’s files', { timeout: 120_000 }, async () => {
    pageA = await (await harness.newBrowser()).newPage();
    reportPageErrors(pageA, 'A');
    const created = await createWorkspace(pageA, server.origin, 'Team files');
    namespaceId = created.namespaceId;
    await pageA.getByTestId('empty-state').waitFor();

    const paths = await Promise.all(originals.map((file) => harness.writeTempFile(file.name, file.bytes)));
    const servedBefore = (await server.metrics()).blockBytesServed;
    await uploadThroughPicker(pageA, paths);
    await waitForUploadsDone(pageA, originals.map((file) => file.name));
    for (const file of originals) await waitForFileStatus(pageA, file.name, 'synced');
    // A keeps its copy of big.bin from the picked file after the commit; its engine waits for
    // that instead of downloading the upload back.
    expect((await server.metrics()).blockBytesServed - servedBefore).toBe(0);

    const shareLink = await readShareLink(pageA);
    expect(shareLink).toContain('#invite=');

    pageB = await (await harness.newBrowser()).newPage();
    reportPageErrors(pageB, 'B');
    await joinWithLink(pageB, shareLink, namespaceId);
    for (const file of originals) await waitForFileStatus(pageB, file.name, 'synced');
    expect(await fileRowPaths(pageB)).toEqual(['big.bin', 'empty.txt', 'notes.txt']);

    for (const file of originals) {
      const saved = await saveFileAndHash(pageB, file.name);
      expect(saved.suggestedName).toBe(file.name);
      expect(saved.sha256, `SHA-256 of ${file.name} saved in B`).toBe(sha256(file.bytes));
    }

    // The joined workspace is listed on B's home page.
    await pageB.goto(`${new URL(pageB.url()).origin}/`);
    const link = pageB.getByTestId('workspace-link').filter({ hasText: 'Team files' });
    await link.waitFor();
    expect(await link.count()).toBe(1);
    await link.click();
    await waitForFileStatus(pageB, 'notes.txt', 'synced');
  });

  test('a rename in A shows in B under the new path only', { timeout: 60_000 }, async () => {
    await renameFile(pageA, 'notes.txt', 'docs/meeting notes.txt');
    await waitForFileStatus(pageB, 'docs/meeting notes.txt', 'synced', 10_000);
    await waitForFileGone(pageB, 'notes.txt', 10_000);
    const saved = await saveFileAndHash(pageB, 'docs/meeting notes.txt');
    expect(saved.sha256).toBe(sha256(text.bytes));
  });

  test('Open shows a synced file in a new tab, at its file URL', { timeout: 60_000 }, async () => {
    await pageB.waitForFunction(() => navigator.serviceWorker.controller !== null);
    const [tab] = await Promise.all([
      pageB.context().waitForEvent('page'),
      fileRow(pageB, 'docs/meeting notes.txt').getByTestId('open-file').click(),
    ]);
    await tab.waitForURL((url) => url.pathname.endsWith('/file/docs/meeting%20notes.txt'));
    await tab.waitForLoadState();
    expect(await tab.evaluate(() => document.body.innerText)).toBe(text.bytes.toString('utf8'));
    await tab.close();
  });

  test('a picked folder keeps its structure; a dropped file is uploaded; invalid names are reported, not sent', { timeout: 60_000 }, async () => {
    const folder = await harness.writeTempTree('project', {
      'readme.md': Buffer.from('# Project\n'),
      'src/main.c': Buffer.from('int main(void) { return 0; }\n'),
    });
    await pageA.getByTestId('folder-input').setInputFiles(folder);
    await waitForFileStatus(pageB, 'project/readme.md', 'synced');
    await waitForFileStatus(pageB, 'project/src/main.c', 'synced');

    await pageA.evaluate(() => {
      const transfer = new DataTransfer();
      transfer.items.add(new File(['dropped bytes'], 'dropped.txt', { type: 'text/plain' }));
      for (const type of ['dragenter', 'dragover', 'drop']) {
        document.body.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
      }
    });
    await waitForFileStatus(pageB, 'dropped.txt', 'synced');
    expect((await saveFileAndHash(pageB, 'dropped.txt')).sha256).toBe(sha256(Buffer.from('dropped bytes')));

    await pageA.getByTestId('file-input').setInputFiles([{ name: 'bell\u0007.txt', mimeType: 'text/plain', buffer: Buffer.from('x') }]);
    const notice = pageA.getByTestId('notice-error').filter({ hasText: 'bell' });
    await notice.waitFor();
    expect(await notice.textContent()).toMatch(/control characters/);
    expect(await pageA.locator('[data-testid="upload-row"][data-path^="bell"]').count()).toBe(0);
  });

  test('a delete in A removes the file in B', { timeout: 60_000 }, async () => {
    await deleteFile(pageA, 'empty.txt');
    await waitForFileGone(pageA, 'empty.txt', 10_000);
    await waitForFileGone(pageB, 'empty.txt', 10_000);
    await openFolder(pageB, '');
    expect(await fileRowPaths(pageB)).toEqual(['docs', 'project', 'big.bin', 'dropped.txt']);
    await openFolder(pageB, 'project');
    expect(await fileRowPaths(pageB)).toEqual(['project/src', 'project/readme.md']);
  });

  test('both browsers replace one file at once: both versions survive, one as a conflicted copy', { timeout: 90_000 }, async () => {
    const base = Buffer.from('base version\n');
    await uploadThroughPicker(pageA, [await harness.writeTempFile('shared.txt', base)]);
    // Both know the base version: each upload below replaces it (its parent).
    await waitForFileStatus(pageA, 'shared.txt', 'synced');
    await waitForFileStatus(pageB, 'shared.txt', 'synced');

    const fromA = Buffer.from('edited in A\n');
    const fromB = Buffer.from('edited in B, a longer line\n');
    const [fileA, fileB] = await Promise.all([harness.writeTempFile('shared.txt', fromA), harness.writeTempFile('shared.txt', fromB)]);
    await Promise.all([uploadThroughPicker(pageA, [fileA]), uploadThroughPicker(pageB, [fileB])]);

    const expected = [sha256(fromA), sha256(fromB)].sort();
    for (const page of [pageA, pageB]) {
      await openFolder(page, '');
      const copyRow = page.locator('[data-testid="file-row"][data-path^="shared (conflicted copy "]');
      await copyRow.waitFor({ timeout: 30_000 });
      const copy = (await copyRow.getAttribute('data-path'))!;
      expect(copy).toMatch(/^shared \(conflicted copy \d{4}-\d\d-\d\d \d{6} [\p{L}\p{N} ._-]+\)\.txt$/u);
      await waitForFileStatus(page, copy, 'synced');
      await waitForFileStatus(page, 'shared.txt', 'synced');
      // Wait for the winner's bytes to replace the base version here too.
      const hashes = async () => [(await saveFileAndHash(page, 'shared.txt')).sha256, (await saveFileAndHash(page, copy)).sha256].sort();
      const deadline = Date.now() + 20_000;
      let seen = await hashes();
      while (JSON.stringify(seen) !== JSON.stringify(expected) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        seen = await hashes();
      }
      expect(seen).toEqual(expected);
    }
  });

  test('a reset link stops working and the old one shows a clear message', { timeout: 60_000 }, async () => {
    const oldLink = await readShareLink(pageA);
    await pageA.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.origin });
    await pageA.getByTestId('copy-share-link').click();
    await pageA.getByTestId('notice-info').filter({ hasText: 'copied' }).waitFor();
    expect(await pageA.evaluate(() => navigator.clipboard.readText())).toBe(oldLink);

    pageA.once('dialog', (dialog) => void dialog.accept());
    await pageA.getByTestId('reset-share-link').click();
    await pageA.waitForFunction(
      (previous) => (document.querySelector('[data-testid="share-link"]') as HTMLInputElement).value !== previous,
      oldLink,
    );
    const newLink = await readShareLink(pageA);
    expect(newLink).not.toBe(oldLink);

    const pageC = await (await harness.newBrowser()).newPage();
    reportPageErrors(pageC, 'C');
    await pageC.goto(oldLink);
    const joinError = pageC.getByTestId('join-error');
    await joinError.waitFor({ timeout: 20_000 });
    expect(await joinError.textContent()).toMatch(/this link no longer works/i);
    await pageC.getByTestId('go-home').click();
    await pageC.waitForURL((url) => url.pathname === '/' && url.hash === '');
    await pageC.getByTestId('create-workspace').waitFor();

    await joinWithLink(pageC, newLink, namespaceId);
    await waitForFileStatus(pageC, 'docs/meeting notes.txt', 'synced');
  });

  test('a link opened over the app already open at that address still joins (fragment-only navigation)', { timeout: 60_000 }, async () => {
    const page = await (await harness.newBrowser()).newPage();
    reportPageErrors(page, 'D');
    await page.goto(`${server.origin}/`);
    await page.getByTestId('create-workspace').waitFor();
    // A well-formed invite the server never issued.
    await page.goto(`${server.origin}/#invite=AAAAAAAAAAAAAAAAAAAAAA`);
    await page.getByTestId('join-error').waitFor({ timeout: 20_000 });

    const link = new URL(await readShareLink(pageA));
    await page.goto(`${server.origin}${link.pathname}`);
    await page.getByTestId('open-error').waitFor({ timeout: 20_000 });
    await page.goto(link.href);
    await page.waitForURL((url) => url.pathname === link.pathname && url.hash === '');
    await waitForFileStatus(page, 'big.bin', 'synced');
  });
});

describe('insecure context', () => {
  test('a page opened over plain http on a non-local name explains why it cannot work, and starts no worker', { timeout: 60_000 }, async () => {
    const server = await harness.startServer();
    const port = new URL(server.origin).port;
    const browser = await harness.launchExtraBrowser(['--host-resolver-rules=MAP nearsync.test 127.0.0.1']);
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`http://nearsync.test:${port}/`);
    const banner = page.getByTestId('insecure-context');
    await banner.waitFor();
    expect(await banner.textContent()).toMatch(/https:\/\/.*localhost/);
    expect(await page.evaluate(() => window.isSecureContext)).toBe(false);
    expect(page.workers()).toHaveLength(0);
    await context.close();
  });
});

describe('sync over a slow server link', () => {
  // Slow enough that a sync takes seconds, so a reload and a second tab land mid-transfer.
  const EGRESS_BYTES_PER_SECOND = 16 * MiB;
  let server: TestServer;

  beforeAll(async () => {
    server = await harness.startServer({ egressBytesPerSecond: EGRESS_BYTES_PER_SECOND });
  });

  /** A uploads one file into a new workspace and leaves, so that B can only fetch from the server. */
  async function publishFile(name: string, bytes: Buffer): Promise<{ namespaceId: string; shareLink: string }> {
    const contextA = await harness.newBrowser();
    const pageA = await contextA.newPage();
    reportPageErrors(pageA, 'A');
    const created = await createWorkspace(pageA, server.origin, `Slow ${name}`);
    await uploadThroughPicker(pageA, [await harness.writeTempFile(name, bytes)]);
    await waitForUploadsDone(pageA, [name], 90_000);
    await waitForFileStatus(pageA, name, 'synced');
    await contextA.close();
    return created;
  }

  test('a reload mid-sync resumes instead of starting over', { timeout: 180_000 }, async () => {
    const bytes = randomBuffer(64 * MiB);
    const blocks = blockCount(bytes.length);
    const { namespaceId, shareLink } = await publishFile('large.bin', bytes);

    const pageB = await (await harness.newBrowser()).newPage();
    reportPageErrors(pageB, 'B');
    const start = await server.metrics();
    await joinWithLink(pageB, shareLink, namespaceId);

    // Wait until part, but clearly not all, of the file is on B.
    await pageB.waitForFunction(
      (total) => {
        const element = document.querySelector('[data-testid="overall-progress"]');
        const done = Number(element?.getAttribute('data-done-bytes'));
        return Number(element?.getAttribute('data-total-bytes')) === total && done >= total * 0.25 && done < total;
      },
      bytes.length,
      { timeout: 60_000, polling: 50 },
    );
    const atReload = await overallProgress(pageB);
    const beforeReload = await server.metrics();
    await pageB.reload();
    await waitForFileStatus(pageB, 'large.bin', 'synced', 90_000);
    const end = await server.metrics();

    const missingAtReload = Math.ceil((atReload.total - atReload.done) / BLOCK_SIZE);
    const servedAfterReload = end.blockRequestsServed - beforeReload.blockRequestsServed;
    const servedInAll = end.blockRequestsServed - start.blockRequestsServed;
    console.info(
      `resume: ${blocks} blocks, ${atReload.done}/${atReload.total} bytes done at reload (${missingAtReload} blocks missing), ` +
        `${servedAfterReload} block requests served after the reload, ${servedInAll} in all`,
    );
    expect(servedAfterReload).toBeLessThan(blocks);
    // Blocks whose bytes were sent just before the reload but not yet stored are fetched again.
    const inFlightAllowance = 4;
    expect(servedAfterReload).toBeLessThanOrEqual(missingAtReload + inFlightAllowance);

    const saved = await saveFileAndHash(pageB, 'large.bin');
    expect(saved.sha256).toBe(sha256(bytes));
  });

  test('two tabs of one browser: one syncs, the other follows, each block is fetched once', { timeout: 180_000 }, async () => {
    const bytes = randomBuffer(48 * MiB + 7);
    const blocks = blockCount(bytes.length);
    const { namespaceId, shareLink } = await publishFile('shared.bin', bytes);

    const contextB = await harness.newBrowser();
    const firstTab = await contextB.newPage();
    const secondTab = await contextB.newPage();
    reportPageErrors(firstTab, 'B tab 1');
    reportPageErrors(secondTab, 'B tab 2');
    const start = await server.metrics();
    await joinWithLink(firstTab, shareLink, namespaceId);
    await waitForRole(firstTab, 'leader');
    await secondTab.goto(`${new URL(firstTab.url()).origin}/w/${namespaceId}`);
    await waitForRole(secondTab, 'follower');
    const { done: doneWhenSecondTabOpened } = await overallProgress(firstTab);

    await waitForFileStatus(firstTab, 'shared.bin', 'synced', 90_000);
    await waitForFileStatus(secondTab, 'shared.bin', 'synced', 30_000);
    await waitForAllSynced(firstTab, bytes.length);
    await waitForAllSynced(secondTab, bytes.length);
    expect(await secondTab.getByTestId('sync-role').getAttribute('data-role')).toBe('follower');
    expect(await fileRowPaths(secondTab)).toEqual(await fileRowPaths(firstTab));

    const served = (await server.metrics()).blockRequestsServed - start.blockRequestsServed;
    console.info(`two tabs: ${blocks} blocks, ${served} block requests served; second tab opened at ${doneWhenSecondTabOpened} bytes`);
    expect(served).toBe(blocks);

    const saved = await saveFileAndHash(secondTab, 'shared.bin');
    expect(saved.sha256).toBe(sha256(bytes));

    // When the syncing tab goes away, the other one takes over.
    await firstTab.close();
    await waitForRole(secondTab, 'leader', 30_000);
  });

  test('three tabs: after the syncing tab goes away, the new leader keeps the remaining follower current', { timeout: 180_000 }, async () => {
    const first = randomBuffer(64 * 1024 + 5);
    const { namespaceId, shareLink } = await publishFile('first.bin', first);
    const context = await harness.newBrowser();
    const tabs = [await context.newPage(), await context.newPage(), await context.newPage()];
    tabs.forEach((tab, i) => reportPageErrors(tab, `tab ${i + 1}`));
    await joinWithLink(tabs[0], shareLink, namespaceId);
    await waitForRole(tabs[0], 'leader');
    for (const tab of tabs.slice(1)) {
      await tab.goto(`${new URL(tabs[0].url()).origin}/w/${namespaceId}`);
      await waitForRole(tab, 'follower');
    }
    await waitForFileStatus(tabs[2], 'first.bin', 'synced', 60_000);

    // The tab that takes over announces itself with every file; the follower that did not ask
    // for that answers, so the new leader sends it the changes that follow.
    await tabs[0].close();
    const role = async (tab: Page) => tab.getByTestId('sync-role').getAttribute('data-role');
    await expect.poll(async () => [await role(tabs[1]), await role(tabs[2])].sort().join(','), { timeout: 30_000 }).toBe('follower,leader');
    const follower = (await role(tabs[1])) === 'follower' ? tabs[1] : tabs[2];
    const leader = follower === tabs[1] ? tabs[2] : tabs[1];

    const later = randomBuffer(3 * 1024 + 1);
    await uploadThroughPicker(leader, [await harness.writeTempFile('later.bin', later)]);
    await waitForUploadsDone(leader, ['later.bin'], 60_000);
    await waitForFileStatus(follower, 'later.bin', 'synced', 30_000);
    await waitForFileStatus(leader, 'later.bin', 'synced', 30_000);
    expect(await fileRowPaths(follower)).toEqual(await fileRowPaths(leader));
    const saved = await saveFileAndHash(follower, 'later.bin');
    expect(saved.sha256).toBe(sha256(later));
    await context.close();
  });
});
