import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { ServerApi } from '../../src/engine/server-api.ts';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { startLyingPeer, type LyingPeer } from './support/lying-peer-process.ts';
import { SAVE_SPACING_MS, byteCounters, peerRows, waitForPeerRows } from './support/peer-view.ts';
import { seedWorkspace, type SeedFile } from './support/seed-workspace.ts';
import {
  createWorkspace,
  joinWithLink,
  overallProgress,
  saveFileAndHash,
  uploadThroughPicker,
  waitForAllSynced,
  waitForUploadsDone,
} from './ui.ts';

/**
 * Browsers syncing from each other over real WebRTC, inside a network namespace the test
 * makes (Chromium gathers no ICE candidates on loopback alone). The relay and the HTTP API
 * are the real server; every page is a separate browser profile with its own IndexedDB.
 */

const MiB = 1024 * 1024;
const KiB = 1024;
/** Requests a browser keeps in flight to one peer (PeerBlockSource's default pipeline depth). */
const PEER_PIPELINE_DEPTH = 6;

describe.skipIf(!isRoot())('peer-to-peer sync in the browser', () => {
  let harness: NetnsHarness;
  let server: NetnsTestServer;
  let files: string;
  /** Processes and contexts a test started, stopped in afterAll even when the test failed. */
  const stoppers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    files = await mkdtemp(join(tmpdir(), 'nearsync-peers-'));
    harness = await NetnsHarness.start();
    server = await harness.startServer();
  }, 180_000);

  afterAll(async () => {
    for (const stop of stoppers.splice(0).reverse()) await stop().catch(() => undefined);
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
    // What B and C received from peers was sent by one: the senders' rows say so too, A's first.
    const sentBy = (page: Page) =>
      page.locator('[data-testid="peer-bytes-sent"]').evaluateAll((cells) => cells.reduce((sum, cell) => sum + Number(cell.getAttribute('data-bytes')), 0));
    await expect.poll(async () => (await Promise.all([pageA, pageB, pageC].map(sentBy))).reduce((a, b) => a + b, 0), { timeout: 15_000 }).toBeGreaterThanOrEqual(2 * total);
    expect(await sentBy(pageA)).toBeGreaterThan(0);
    expect(await pageA.locator('[data-testid="peer-bytes-sent"]').first().textContent()).toMatch(/ sent$/);
  }, 240_000);
  it('A disconnects halfway through B\'s sync: B finishes from C, byte-identical, with no block from the server', async () => {
    // Big enough that B is still fetching for a couple of seconds after A and C each delivered a block.
    const big = randomBytes(64 * MiB + 777);
    const bigPath = await tempFile('render.mov', big);
    const total = big.length;
    // Each device is its own Chromium process, as on three machines. (As contexts of one
    // shared process, whichever peer delivers first starves the other's channel for seconds,
    // so B would hardly use one of the two.)
    const device = async () => {
      const context = await (await harness.launchSeparateBrowser()).newContext({ acceptDownloads: true });
      stoppers.push(() => context.close());
      return { context, page: await context.newPage() };
    };

    const { context: contextA, page: pageA } = await device();
    const { namespaceId, shareLink } = await createWorkspace(pageA, server.origin, 'cut');
    await uploadThroughPicker(pageA, [bigPath]);
    await waitForUploadsDone(pageA, ['render.mov'], 180_000);
    await waitForAllSynced(pageA, total, 60_000);

    // C syncs first, and A hears C's advert: C holds everything before B starts.
    const { page: pageC } = await device();
    await joinWithLink(pageC, shareLink, namespaceId);
    await waitForAllSynced(pageC, total, 120_000);
    const cId = (await waitForPeerRows(pageA, (rows) => rows.length === 1 && rows[0].cursor === 1))[0].peerId;

    const before = server.server.metrics().blockBytesServed;
    const { page: pageB } = await device();
    await joinWithLink(pageB, shareLink, namespaceId);
    // Cut A off as soon as both A and C have delivered a block to B: B is then pulling from
    // both (the scheduler spreads requests over the peers that claim a block), so A vanishes
    // with requests of B's in flight.
    const atCut = await pageB
      .waitForFunction(
        (expected) => {
          const element = document.querySelector('[data-testid="overall-progress"]');
          const done = Number(element?.getAttribute('data-done-bytes'));
          const total = Number(element?.getAttribute('data-total-bytes'));
          const received = [...document.querySelectorAll('[data-testid="peer-row"] [data-testid="peer-bytes-received"]')].map((cell) =>
            Number(cell.getAttribute('data-bytes')),
          );
          return total === expected && done > 0 && received.length === 2 && received.every((bytes) => bytes > 0) ? { done, total } : null;
        },
        total,
        { polling: 20, timeout: 120_000 },
      )
      .then((handle) => handle.jsonValue() as Promise<{ done: number; total: number }>);
    const rowsAtCut = await peerRows(pageB);
    const cutStarted = Date.now();
    await contextA.close(); // A goes offline: its relay socket and its WebRTC connections die.
    const closeMs = Date.now() - cutStarted;
    const afterCut = await overallProgress(pageB);
    // If B had finished before A vanished, this test would prove nothing: fail instead.
    expect(atCut.done).toBeLessThan(total);
    expect(afterCut.done, 'B had every byte before A went away: use a bigger file').toBeLessThan(total);
    const aAtCut = rowsAtCut.find((row) => row.peerId !== cId);
    const cAtCut = rowsAtCut.find((row) => row.peerId === cId);
    expect(aAtCut?.bytesReceived, 'A had delivered to B before the cut').toBeGreaterThan(0);
    expect(cAtCut?.bytesReceived, 'C had delivered to B before the cut').toBeGreaterThan(0);

    await waitForAllSynced(pageB, total, 120_000);
    const served = server.server.metrics().blockBytesServed - before;
    // A left B's list (peer-left); C, the one that remains, delivered the rest.
    const rowsAfter = await waitForPeerRows(pageB, (rows) => rows.length === 1);
    console.log(
      `A cut with B at ${(atCut.done / MiB).toFixed(1)} of ${(total / MiB).toFixed(1)} MiB (closing A took ${closeMs} ms, ` +
        `B at ${(afterCut.done / MiB).toFixed(1)} MiB after); from A before the cut ${(aAtCut!.bytesReceived / MiB).toFixed(1)} MiB, ` +
        `from C ${(cAtCut!.bytesReceived / MiB).toFixed(1)} MiB then ${(rowsAfter[0].bytesReceived / MiB).toFixed(1)} MiB in all; ` +
        `server served ${served} block bytes to B`,
    );
    expect(rowsAfter[0].peerId).toBe(cId);
    expect(rowsAfter[0].cursor).toBe(1);
    expect(rowsAfter[0].bytesReceived).toBeGreaterThan(cAtCut!.bytesReceived);
    // C claims every block, and a peer that claims a block always comes before the server,
    // so the blocks A never delivered move to C. At most the requests in flight to A at the
    // cut could ever have fallen to the server; here none should.
    expect(served).toBeLessThanOrEqual(PEER_PIPELINE_DEPTH * 4 * MiB);
    expect(served).toBe(0);
    expect((await byteCounters(pageB)).fromServer).toBe('0 B');

    // Byte-identical on B (assembled from its stored blocks), and C's copy untouched.
    expect((await saveFileAndHash(pageB, 'render.mov')).sha256).toBe(sha256(big));
    expect((await saveFileAndHash(pageC, 'render.mov')).sha256).toBe(sha256(big));
  }, 300_000);

  it('a lying peer is caught by hash, not asked again after what was in flight, and the server serves every block', async () => {
    // Many blocks (19), so "not asked again" means something beside a pipeline of 6.
    const seedFiles: SeedFile[] = [
      ...Array.from({ length: 16 }, (_, i) => ({ path: `sheets/part-${String(i).padStart(2, '0')}.bin`, bytes: randomBytes(512 * KiB + i) })),
      { path: 'video.mp4', bytes: randomBytes(9 * MiB + 123) },
    ];
    const total = seedFiles.reduce((sum, file) => sum + file.bytes.length, 0);
    const workspace = await seedWorkspace(server.hostUrl, 'liars', seedFiles);
    expect(workspace.blocks.size).toBe(19);
    const liarToken = (await new ServerApi(server.hostUrl).join(workspace.invite)).token;

    // The liar runs inside the namespace (its ICE candidates are on the namespace's veth) and
    // fetches the real blocks first, so that its lies have the right lengths.
    // It also claims to be fetching every block from the server (FETCHING, never followed by
    // HAVE): once caught, those claims must stop holding B back.
    const liar: LyingPeer = await startLyingPeer(harness.ns, {
      origin: server.origin,
      token: liarToken,
      namespaceId: workspace.namespaceId,
      claimFetching: true,
    });
    stoppers.push(() => liar.stop());
    try {
      const before = server.server.metrics().blockBytesServed;
      const requestsBefore = server.server.metrics().blockRequestsServed;
      const contextB = await harness.newBrowser();
      stoppers.push(() => contextB.close());
      const pageB = await contextB.newPage();
      // No honest peer is online: B has the liar, which claims every block, and the server.
      await joinWithLink(pageB, workspace.shareLink(server.origin), workspace.namespaceId);
      await liar.waitFor((event) => event.event === 'open', 30_000);
      // Well under the 30 s a FETCHING claim may hold a block: a penalised liar holds none.
      await waitForAllSynced(pageB, total, 20_000);
      // Anything B still had on its way to the liar arrives within this.
      await new Promise((resolve) => setTimeout(resolve, 1_000));

      const requests = liar.requests();
      const served = server.server.metrics().blockBytesServed - before;
      const rows = await peerRows(pageB);
      const liarRow = rows.find((row) => row.peerId === liar.peerId);
      console.log(
        `lying peer: asked for ${requests.length} block(s), sent ${liar.lies()} corrupted; ` +
          `server served ${served} of ${total} bytes in ${server.server.metrics().blockRequestsServed - requestsBefore} requests; ` +
          `liar's row on B: ${JSON.stringify(liarRow)}`,
      );
      // It was asked (peers come before the server), and its bytes were sent…
      expect(requests.length).toBeGreaterThanOrEqual(1);
      expect(liar.lies()).toBeGreaterThanOrEqual(1);
      // …but after the first mismatch it got at most what was already in flight: never a
      // second round, although it stayed connected and kept claiming every block.
      expect(requests.length).toBeLessThanOrEqual(PEER_PIPELINE_DEPTH);
      expect(new Set(requests).size).toBe(requests.length);
      expect(liarRow, 'the liar is listed on B').toBeDefined();
      expect(liarRow!.connected).toBe(true);
      expect(liarRow!.cursor).toBe(seedFiles.length);
      expect(liarRow!.penalised).toBe(true);
      expect(liarRow!.bytesReceived).toBe(0);
      // Nothing from it was accepted: every block came from the server, each once.
      expect((await byteCounters(pageB)).fromPeers).toBe('0 B');
      expect(served).toBe(total);
      expect(server.server.metrics().blockRequestsServed - requestsBefore).toBe(workspace.blocks.size);
      for (const file of seedFiles) {
        await new Promise((resolve) => setTimeout(resolve, SAVE_SPACING_MS));
        expect((await saveFileAndHash(pageB, file.path)).sha256, file.path).toBe(sha256(file.bytes));
      }
    } catch (error) {
      console.error(`lying peer stderr:\n${liar.stderr()}`);
      throw error;
    } finally {
      await liar.stop();
    }
  }, 300_000);

  it("a page in workspace X never lists the peers of workspace Y, though both are online on the same relay", async () => {
    const notes = await tempFile('x-notes.txt', Buffer.from('workspace X\n'));
    const other = await tempFile('y-notes.txt', Buffer.from('workspace Y\n'));
    const open = async () => {
      const context = await harness.newBrowser();
      stoppers.push(() => context.close());
      return context.newPage();
    };
    const [x1, y1, x2] = [await open(), await open(), await open()];
    const x = await createWorkspace(x1, server.origin, 'X');
    await uploadThroughPicker(x1, [notes]);
    await waitForUploadsDone(x1, ['x-notes.txt']);
    const y = await createWorkspace(y1, server.origin, 'Y');
    await uploadThroughPicker(y1, [other]);
    await waitForUploadsDone(y1, ['y-notes.txt']);
    await joinWithLink(x2, x.shareLink, x.namespaceId);
    await waitForAllSynced(x2, 12);

    // The two members of X see each other once both advertised…
    const seenByX1 = await waitForPeerRows(x1, (rows) => rows.length === 1 && rows[0].cursor === 1);
    const seenByX2 = await waitForPeerRows(x2, (rows) => rows.length === 1 && rows[0].cursor === 1);
    expect(seenByX1[0].peerId).not.toBe(seenByX2[0].peerId);
    // …and a while later still nobody else: not Y's member, nor the pages of the earlier
    // tests' workspaces that are still online on the same relay.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect((await peerRows(x1)).map((row) => row.peerId)).toEqual([seenByX1[0].peerId]);
    expect((await peerRows(x2)).map((row) => row.peerId)).toEqual([seenByX2[0].peerId]);
    expect(await peerRows(y1)).toEqual([]);
    expect(y.namespaceId).not.toBe(x.namespaceId);
  }, 120_000);
});
