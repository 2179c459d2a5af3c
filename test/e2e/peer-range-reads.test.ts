import { createHash, randomBytes } from 'node:crypto';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import { MAX_BLOCK_SIZE, PIECE_SIZE } from '../../src/protocol/index.ts';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { startLyingPeer } from './support/lying-peer-process.ts';
import { peerRows } from './support/peer-view.ts';
import { seedWorkspace } from './support/seed-workspace.ts';
import { fileRow, joinWithLink, waitForAllSynced } from './ui.ts';

/**
 * Range reads of file URLs (the service worker, through the sync worker) of blocks this
 * browser has not synced, served from a peer piece by piece: each 64 KiB piece is checked
 * against the server's piece hashes before any of it is handed to the reader. Real Chromium
 * processes over real WebRTC inside a network namespace; the misbehaving peer is the test's
 * lying peer (a Node WebRTC peer speaking the block frames).
 */

const MiB = 1024 * 1024;
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

interface RangeAnswer {
  status: number;
  length: number;
  sha256: string;
}

async function rangeRead(page: Page, url: string, start: number, length: number): Promise<RangeAnswer> {
  return page.evaluate(
    async ({ url, start, length }) => {
      const response = await fetch(url, { headers: { Range: `bytes=${start}-${start + length - 1}` } });
      const bytes = new Uint8Array(await response.arrayBuffer());
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
      return { status: response.status, length: bytes.length, sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join('') };
    },
    { url, start, length },
  );
}

async function waitForFileUrls(page: Page): Promise<void> {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 30_000 });
}

describe.skipIf(!isRoot())('range reads from a peer, piece by piece', () => {
  let harness: NetnsHarness;
  let server: NetnsTestServer;
  const stoppers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    harness = await NetnsHarness.start();
    server = await harness.startServer();
  }, 180_000);

  afterAll(async () => {
    for (const stop of stoppers.splice(0).reverse()) await stop().catch(() => undefined);
    await harness?.close();
  }, 60_000);

  it('B reads ranges of a file it has not synced from browser A, byte-exact, with no block bytes from the server', async () => {
    const bytes = randomBytes(40 * MiB + 777);
    const workspace = await seedWorkspace(server.hostUrl, 'range reads', [{ path: 'film.bin', bytes }]);
    const pageA = await (await (await harness.launchSeparateBrowser()).newContext()).newPage();
    await joinWithLink(pageA, workspace.shareLink(server.origin), workspace.namespaceId);
    await waitForAllSynced(pageA, bytes.length, 120_000);

    const pageB = await (await (await harness.launchSeparateBrowser()).newContext()).newPage();
    await joinWithLink(pageB, workspace.shareLink(server.origin), workspace.namespaceId);
    await waitForFileUrls(pageB);
    await pageB.locator('[data-testid="peer-row"][data-connected="true"]').first().waitFor({ timeout: 60_000 });
    const before = server.server.metrics().blockBytesServed;
    const url = `/w/${workspace.namespaceId}/file/film.bin`;
    // From the end backwards (the background sync starts at the front): mid-block, across a
    // block boundary, a piece boundary, the last bytes of the file.
    const reads = [
      [bytes.length - 1000, 1000],
      [9 * MAX_BLOCK_SIZE - 300 * 1024, 1 * MiB],
      [7 * MAX_BLOCK_SIZE + 5 * PIECE_SIZE, 2 * PIECE_SIZE],
      [6 * MAX_BLOCK_SIZE + 1234567, 1 * MiB],
    ];
    for (const [start, length] of reads) {
      const answer = await rangeRead(pageB, url, start, length);
      expect(answer, `bytes ${start}+${length}`).toEqual({ status: 206, length, sha256: sha256(bytes.subarray(start, start + length)) });
    }
    expect(server.server.metrics().blockBytesServed - before).toBe(0);
  }, 300_000);

  it('answers from verified pieces of a block a peer never finishes sending', async () => {
    const bytes = randomBytes(2 * MAX_BLOCK_SIZE);
    const workspace = await seedWorkspace(server.hostUrl, 'half a block', [{ path: 'clip.bin', bytes }]);
    const token = (await new ServerApi(server.hostUrl).join(workspace.invite)).token;
    // The only peer sends the true first MiB of each block, then nothing more: no END ever.
    const stalling = await startLyingPeer(harness.ns, { origin: server.origin, token, namespaceId: workspace.namespaceId, stallAfter: 1 * MiB, label: 'Stalling peer' });
    stoppers.push(() => stalling.stop());
    const pageB = await (await harness.newBrowser()).newPage();
    const before = server.server.metrics().blockBytesServed;
    await joinWithLink(pageB, workspace.shareLink(server.origin), workspace.namespaceId);
    await waitForFileUrls(pageB);
    await fileRow(pageB, 'clip.bin').waitFor();
    await stalling.waitFor((event) => event.event === 'open', 30_000);
    const start = MAX_BLOCK_SIZE + 100 * 1024;
    const length = 512 * 1024;
    const answer = await rangeRead(pageB, `/w/${workspace.namespaceId}/file/clip.bin`, start, length);
    expect(answer).toEqual({ status: 206, length, sha256: sha256(bytes.subarray(start, start + length)) });
    // The block never arrived whole from the peer, and the server sent none of it: the bytes
    // can only have come from the peer's pieces, each checked against the server's hashes.
    // (A request the peer stalls is given up after 15 s of silence; the read is long done.)
    expect(server.server.metrics().blockBytesServed - before).toBe(0);
    // The peer list is a paced view (twice a second): wait for its row rather than read it once.
    await expect.poll(async () => (await peerRows(pageB)).find((row) => row.peerId === stalling.peerId)?.penalised, { timeout: 10_000 }).toBe(false);
  }, 300_000);

  it('rejects a tampered piece: the peer is penalised and the read is byte-exact from the server', async () => {
    const bytes = randomBytes(MAX_BLOCK_SIZE + 4321);
    const workspace = await seedWorkspace(server.hostUrl, 'tampered', [{ path: 'doc.bin', bytes }]);
    const token = (await new ServerApi(server.hostUrl).join(workspace.invite)).token;
    const flipAt = 3 * PIECE_SIZE + 5;
    const liar = await startLyingPeer(harness.ns, { origin: server.origin, token, namespaceId: workspace.namespaceId, flipAt });
    stoppers.push(() => liar.stop());
    try {
      const pageB = await (await harness.newBrowser()).newPage();
      await joinWithLink(pageB, workspace.shareLink(server.origin), workspace.namespaceId);
      await waitForFileUrls(pageB);
      await fileRow(pageB, 'doc.bin').waitFor();
      await liar.waitFor((event) => event.event === 'open', 30_000);
      // The range holds the flipped byte, and the pieces before it (true bytes from the liar).
      const answer = await rangeRead(pageB, `/w/${workspace.namespaceId}/file/doc.bin`, 0, 1 * MiB);
      expect(answer).toEqual({ status: 206, length: 1 * MiB, sha256: sha256(bytes.subarray(0, 1 * MiB)) });
      expect(liar.requests().length).toBeGreaterThanOrEqual(1);
      expect(liar.lies()).toBeGreaterThanOrEqual(1);
      // The peer list is a paced view (twice a second): wait for the penalty to show.
      await expect.poll(async () => (await peerRows(pageB)).find((r) => r.peerId === liar.peerId)?.penalised, { timeout: 10_000 }).toBe(true);
      const row = (await peerRows(pageB)).find((r) => r.peerId === liar.peerId);
      expect(row?.bytesReceived).toBe(0);
      // The whole file, once synced, is the true one.
      await waitForAllSynced(pageB, bytes.length, 60_000);
      const whole = await rangeRead(pageB, `/w/${workspace.namespaceId}/file/doc.bin`, 0, bytes.length);
      expect(whole.sha256).toBe(sha256(bytes));
    } catch (error) {
      console.error(`lying peer stderr:\n${liar.stderr()}`);
      throw error;
    }
  }, 300_000);
});
