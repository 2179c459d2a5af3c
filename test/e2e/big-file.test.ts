import { randomBytes } from 'node:crypto';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import { inviteFromLink } from '../../src/protocol/index.ts';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { PseudoRandomFile } from '../support/pseudo-random-file.ts';
import { E2eHarness, sha256, type TestServer } from './harness.ts';
import { seedWorkspace } from './support/seed-workspace.ts';
import { joinWithLink, saveFileAndHash, waitForFileStatus } from './ui.ts';

/**
 * Files over 1 GiB in real Chromium with on-disk profiles (as users have: an off-the-record
 * context keeps its storage in memory and cannot hold them). Bytes are checked by saving the
 * file through the app (Save composes the stored blocks) and hashing the download as a
 * stream, never by reading the file into the test's memory.
 */

const MiB = 1024 * 1024;
const BIG = Math.round(1.1 * 1024) * MiB + 12_345;
const SYNC_TIMEOUT_MS = 20 * 60_000;

async function savedMatches(page: Page, path: string, file: PseudoRandomFile): Promise<void> {
  const saved = await saveFileAndHash(page, path);
  expect(saved.sha256).toBe(file.sha256());
}

describe('a file over 1 GiB from the server', () => {
  let harness: E2eHarness;
  let server: TestServer;

  beforeAll(async () => {
    harness = await E2eHarness.start();
    server = await harness.startServer();
  }, 180_000);

  afterAll(async () => {
    await harness?.close();
  }, 120_000);

  it('syncs byte-exact into the block files of an on-disk profile, and saves', async () => {
    const file = new PseudoRandomFile('e2e big from server', BIG);
    const writer = await new ServerApi(server.origin).createWorkspace('big');
    await file.commitTo(new ServerApi(server.origin, writer.token), writer.namespaceId, 'big.bin');

    const page = await (await harness.newProfileBrowser()).newPage();
    await joinWithLink(page, writer.inviteUrl, writer.namespaceId);
    await waitForFileStatus(page, 'big.bin', 'synced', SYNC_TIMEOUT_MS);
    await savedMatches(page, 'big.bin', file);
    expect((await server.metrics()).blockBytesServed).toBe(BIG);
  }, SYNC_TIMEOUT_MS + 300_000);

  it('blocks stored as IndexedDB Blobs by schema version 1 stay readable and move to block files', async () => {
    const bytes = randomBytes(9 * MiB + 7);
    const seeded = await seedWorkspace(server.origin, 'legacy', [{ path: 'old.bin', bytes }]);
    const context = await harness.newBrowser();
    const page = await context.newPage();
    // A page of the origin without the app: lay out the database as version 1 did.
    await page.goto(`${server.origin}/api/v1/metrics`);
    await page.evaluate(
      async ({ origin, ns, token, blocks, size }) => {
        const db = await new Promise<IDBDatabase>((resolve, reject) => {
          const open = indexedDB.open('nearsync', 1);
          open.onupgradeneeded = () => {
            open.result.createObjectStore('blocks');
            open.result.createObjectStore('files', { keyPath: ['ns', 'path'] }).createIndex('byNamespace', 'ns');
            open.result.createObjectStore('workspaces', { keyPath: 'namespaceId' });
          };
          open.onsuccess = () => resolve(open.result);
          open.onerror = () => reject(open.error);
        });
        const values: Blob[] = [];
        for (const hash of blocks) {
          const response = await fetch(`${origin}/api/v1/blocks/${hash}?ns=${ns}`, { headers: { authorization: `Bearer ${token}` } });
          values.push(await response.blob());
        }
        const tx = db.transaction(['blocks', 'files', 'workspaces'], 'readwrite');
        blocks.forEach((hash, i) => tx.objectStore('blocks').put(values[i], hash));
        tx.objectStore('files').put({ ns, path: 'old.bin', size, mtime: 1, blocks, sjid: 1 });
        tx.objectStore('workspaces').put({
          namespaceId: ns, name: 'legacy', token, shareLink: null, cursor: 1, syncedCursor: 1, addedAt: Date.now(),
        });
        await new Promise((resolve, reject) => {
          tx.oncomplete = resolve;
          tx.onabort = () => reject(tx.error);
        });
        db.close();
      },
      { origin: server.origin, ns: seeded.namespaceId, token: seeded.token, blocks: [...seeded.blocks.keys()], size: bytes.length },
    );
    const served = (await server.metrics()).blockBytesServed;

    await page.goto(`${server.origin}/w/${seeded.namespaceId}`);
    await waitForFileStatus(page, 'old.bin', 'synced', 30_000);
    expect((await saveFileAndHash(page, 'old.bin')).sha256).toBe(sha256(bytes));
    // Moved in the background: the version 1 store empties, and the file still saves.
    await page.waitForFunction(
      () =>
        new Promise<boolean>((resolve) => {
          const open = indexedDB.open('nearsync');
          open.onsuccess = () => {
            const count = open.result.transaction('blocks').objectStore('blocks').count();
            count.onsuccess = () => {
              open.result.close();
              resolve(count.result === 0);
            };
          };
        }),
      undefined,
      { timeout: 30_000, polling: 250 },
    );
    await page.reload();
    await waitForFileStatus(page, 'old.bin', 'synced', 30_000);
    expect((await saveFileAndHash(page, 'old.bin')).sha256).toBe(sha256(bytes));
    expect((await server.metrics()).blockBytesServed).toBe(served);
  }, 120_000);
});

describe.skipIf(!isRoot())('a file over 1 GiB from a peer', () => {
  let harness: NetnsHarness;
  let server: NetnsTestServer;

  beforeAll(async () => {
    harness = await NetnsHarness.start();
    server = await harness.startServer();
  }, 180_000);

  afterAll(async () => {
    await harness?.close();
  }, 120_000);

  it('B gets it byte-exact from A over WebRTC, with no block bytes from the server', async () => {
    const file = new PseudoRandomFile('e2e big from peer', BIG);
    const writer = await new ServerApi(server.hostUrl).createWorkspace('big peers');
    await file.commitTo(new ServerApi(server.hostUrl, writer.token), writer.namespaceId, 'big.bin');
    const shareLink = `${server.origin}/w/${writer.namespaceId}#invite=${inviteFromLink(writer.inviteUrl)}`;

    // Each device its own Chromium process with its own on-disk profile, as two machines.
    const pageA = await (await harness.newProfileBrowser()).newPage();
    await joinWithLink(pageA, shareLink, writer.namespaceId);
    await waitForFileStatus(pageA, 'big.bin', 'synced', SYNC_TIMEOUT_MS);

    const before = server.server.metrics().blockBytesServed;
    const pageB = await (await harness.newProfileBrowser()).newPage();
    await joinWithLink(pageB, shareLink, writer.namespaceId);
    await waitForFileStatus(pageB, 'big.bin', 'synced', SYNC_TIMEOUT_MS);
    expect(server.server.metrics().blockBytesServed - before).toBe(0);
    await savedMatches(pageB, 'big.bin', file);
  }, 2 * SYNC_TIMEOUT_MS + 300_000);
});
