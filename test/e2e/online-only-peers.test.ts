import { createHash, randomBytes } from 'node:crypto';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { waitForPeerRows } from './support/peer-view.ts';
import { seedWorkspace, type SeededWorkspace } from './support/seed-workspace.ts';
import { joinWithLink, saveFileAndHash, waitForAllSynced } from './ui.ts';

/**
 * A browser holding a partial copy (online-only files) next to one that syncs everything,
 * over real WebRTC inside a network namespace: the partial one advertises cursor 0 (it does
 * not claim the workspace), so the other takes what it lacks from the server and finishes,
 * byte-identical; once the partial one keeps everything again it advertises its cursor.
 */

const MiB = 1024 * 1024;
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe.skipIf(!isRoot())('online-only files and peers', () => {
  let harness: NetnsHarness;
  let server: NetnsTestServer;
  let workspace: SeededWorkspace;
  const kept = randomBytes(2 * MiB + 17);
  const cloud = randomBytes(9 * MiB + 5);

  beforeAll(async () => {
    harness = await NetnsHarness.start();
    server = await harness.startServer();
    workspace = await seedWorkspace(server.hostUrl, 'partial', [
      { path: 'keep/a.bin', bytes: kept },
      { path: 'cloud/b.bin', bytes: cloud },
    ]);
  }, 180_000);

  afterAll(async () => {
    await harness?.close();
  }, 60_000);

  it('a peer with online-only files is not counted on for everything: the other browser takes the rest from the server', async () => {
    const pageA: Page = await (await harness.newBrowser()).newPage();
    const cdp = await pageA.context().newCDPSession(pageA);
    // A join that will not fit asks first: A makes the workspace online only, then keeps one folder.
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: 8 * MiB });
    await joinWithLink(pageA, workspace.shareLink(server.origin), workspace.namespaceId);
    await pageA.getByTestId('join-question').waitFor({ state: 'visible', timeout: 60_000 });
    await pageA.getByTestId('join-online-only').click();
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: 1024 * MiB });
    await pageA.locator('[data-testid="folder-row"][data-path="keep"] [data-testid="keep-select"]').selectOption('keep');
    await waitForAllSynced(pageA, kept.length, 60_000);

    const before = server.server.metrics().blockBytesServed;
    const pageB = await (await harness.newBrowser()).newPage();
    await joinWithLink(pageB, workspace.shareLink(server.origin), workspace.namespaceId);
    // A is in sync for what it keeps, yet claims nothing by cursor.
    await waitForPeerRows(pageB, (rows) => rows.length === 1 && rows[0].cursor === 0, 60_000);
    await waitForAllSynced(pageB, kept.length + cloud.length, 120_000);
    // What A does not hold came from the server (A's kept block may have come from A).
    expect(server.server.metrics().blockBytesServed - before).toBeGreaterThanOrEqual(cloud.length);
    expect((await saveFileAndHash(pageB, 'cloud/b.bin')).sha256).toBe(sha256(cloud));

    // A keeps everything again: once it holds it all, it advertises the journal's cursor.
    await pageA.getByTestId('keep-select').first().selectOption('keep');
    await waitForAllSynced(pageA, kept.length + cloud.length, 120_000);
    await waitForPeerRows(pageB, (rows) => rows.length === 1 && rows[0].cursor === 2, 60_000);
  }, 300_000);
});
