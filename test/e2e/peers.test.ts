import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { createWorkspace, joinWithLink, saveFileAndHash, uploadThroughPicker, waitForAllSynced, waitForUploadsDone } from './ui.ts';

/**
 * Browsers syncing from each other over real WebRTC, inside a network namespace the test
 * makes (Chromium gathers no ICE candidates on loopback alone). The relay and the HTTP API
 * are the real server; every page is a separate browser profile with its own IndexedDB.
 */

const MiB = 1024 * 1024;

describe.skipIf(!isRoot())('peer-to-peer sync in the browser', () => {
  let harness: NetnsHarness;
  let server: NetnsTestServer;
  let files: string;

  beforeAll(async () => {
    files = await mkdtemp(join(tmpdir(), 'nearsync-peers-'));
    harness = await NetnsHarness.start();
    server = await harness.startServer();
  }, 180_000);

  afterAll(async () => {
    await harness?.close();
    await rm(files, { recursive: true, force: true });
  }, 60_000);

  async function tempFile(name: string, bytes: Uint8Array): Promise<string> {
    const path = join(files, name);
    await writeFile(path, bytes);
    return path;
  }
  const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

  it('B and C join while A is online and get every block from peers, none from the server', async () => {
    const big = randomBytes(26 * MiB + 4321);
    const small = Buffer.from('meeting notes\n');
    const bigPath = await tempFile('design.psd', big);
    const smallPath = await tempFile('notes.txt', small);
    const total = big.length + small.length;

    const pageA = await (await harness.newBrowser()).newPage();
    const { namespaceId, shareLink } = await createWorkspace(pageA, server.origin, 'office');
    await uploadThroughPicker(pageA, [bigPath, smallPath]);
    await waitForUploadsDone(pageA, ['design.psd', 'notes.txt'], 120_000);
    await waitForAllSynced(pageA, total);

    const before = server.server.metrics().blockBytesServed;
    const pageB = await (await harness.newBrowser()).newPage();
    const pageC = await (await harness.newBrowser()).newPage();
    await Promise.all([joinWithLink(pageB, shareLink, namespaceId), joinWithLink(pageC, shareLink, namespaceId)]);
    await Promise.all([waitForAllSynced(pageB, total, 120_000), waitForAllSynced(pageC, total, 120_000)]);

    expect(server.server.metrics().blockBytesServed - before).toBe(0);
    for (const page of [pageB, pageC]) {
      expect((await saveFileAndHash(page, 'design.psd')).sha256).toBe(sha256(big));
      expect((await saveFileAndHash(page, 'notes.txt')).sha256).toBe(sha256(small));
      // The peer list shows where the bytes came from.
      const received = await page
        .locator('[data-testid="peer-bytes-received"]')
        .evaluateAll((cells) => cells.reduce((sum, cell) => sum + Number(cell.getAttribute('data-bytes')), 0));
      expect(received).toBe(total);
      // Each peer advertised its cursor once synced, and the others heard it.
      await page.waitForFunction(() => {
        const rows = [...document.querySelectorAll('[data-testid="peer-row"]')];
        return rows.length === 2 && rows.every((row) => row.getAttribute('data-cursor') === '2');
      });
    }
  }, 240_000);
});
