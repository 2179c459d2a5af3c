import type { CDPSession, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { formatBytes } from '../../src/app/format.ts';
import { E2eHarness, randomBuffer, sha256, type TestServer } from './harness.ts';
import { seedWorkspace, type SeededWorkspace } from './support/seed-workspace.ts';
import { joinWithLink, overallProgress, saveFileAndHash, waitForAllSynced } from './ui.ts';

/**
 * A browser whose storage quota runs out mid-join (the user chose to keep everything when the
 * join said it would not fit) (lowered through the DevTools protocol, as a
 * full disk would): syncing pauses with a message saying how much more space is needed, keeps
 * every block it stored, and finishes by itself once the quota is raised again.
 */

const MiB = 1024 * 1024;
const FILES = 12;
const FILE_SIZE = 3 * MiB;

let harness: E2eHarness;
let server: TestServer;
let workspace: SeededWorkspace;
const bytes = Array.from({ length: FILES }, () => randomBuffer(FILE_SIZE));

describe('storage quota exhaustion', () => {
  beforeAll(async () => {
    harness = await E2eHarness.start();
    server = await harness.startServer();
    workspace = await seedWorkspace(
      server.origin,
      'Quota test',
      bytes.map((b, i) => ({ path: `clip-${String(i).padStart(2, '0')}.bin`, bytes: b })),
    );
  }, 180_000);

  afterAll(async () => {
    await harness?.close();
  });

  test('pauses with a clear message when the quota is full, keeps what it stored, resumes when space is freed', { timeout: 180_000 }, async () => {
    const page: Page = await (await harness.newBrowser()).newPage();
    page.on('pageerror', (error) => console.error('page error:', error.message));
    const cdp: CDPSession = await page.context().newCDPSession(page);
    // Room for the app's own databases and about a third of the workspace.
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: 14 * MiB });

    await joinWithLink(page, workspace.shareLink(server.origin), workspace.namespaceId);
    // The join sees that the workspace will not fit and asks first; keeping everything anyway
    // syncs until the storage is full.
    await page.getByTestId('join-question').waitFor({ state: 'visible', timeout: 60_000 });
    await page.getByTestId('join-keep-all').click();
    const banner = page.getByTestId('storage-full');
    await banner.waitFor({ state: 'visible', timeout: 60_000 });
    const message = (await banner.textContent()) ?? '';
    expect(message).toMatch(/Syncing is paused: this browser's storage for this site is full\. [\d.]+ [kMG]?B more is needed/);
    expect(message).toMatch(/resumes by itself/);
    // No other error hides behind the pause (an empty "Could not fetch" was the old symptom).
    expect(await page.getByTestId('view-error').isHidden()).toBe(true);

    const paused = await overallProgress(page);
    expect(paused.total).toBe(FILES * FILE_SIZE);
    expect(paused.done).toBeGreaterThan(0);
    expect(paused.done).toBeLessThan(paused.total);
    // Paused means paused: nothing is lost and nothing more is stored while the quota is full.
    await page.waitForTimeout(4_000);
    expect((await overallProgress(page)).done).toBe(paused.done);
    expect(await banner.isVisible()).toBe(true);
    expect(message).toContain(`(${formatBytes(paused.total - paused.done)} still to fetch`);
    expect(await page.getByTestId('storage-usage').textContent()).toMatch(/^Storage: .+ used of .+ this browser allows this site/);

    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: 1024 * MiB });
    await waitForAllSynced(page, FILES * FILE_SIZE, 90_000);
    await banner.waitFor({ state: 'hidden' });
    // One save per page: Chromium blocks a page's further automatic downloads.
    const saved = await saveFileAndHash(page, `clip-${FILES - 1}.bin`);
    expect(saved.sha256).toBe(sha256(bytes[FILES - 1]));
  });
});
