import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCK_SIZE, PIECE_SIZE, lanKeyBytes, type BlockHash, type LanBridgeMetrics } from '../../src/protocol/index.ts';
import { LanAdvertiser } from '../../src/lan/discovery/index.ts';
import { LanBlockServer } from '../../src/lan/tcp/lan-block-server.ts';
import { api, commitFile, createWorkspace } from '../integration/helpers.ts';
import { RelayClient } from '../integration/relay-helpers.ts';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { DaemonPool, type DaemonProcess, lanTestUdpPort } from '../support/lan-daemon.ts';
import { until } from '../support/until.ts';
import { waitForPeerRows } from './support/peer-view.ts';
import { joinWithLink, saveFileAndHash, uploadThroughPicker, waitForAllSynced, waitForUploadsDone } from './ui.ts';

/**
 * An office, for real: two `nearsync peer --lan` daemons and a browser in one workspace,
 * inside a network namespace the test makes. The server runs in this process on the host
 * end of the namespace's veth with its LAN bridge on (UDP bound to the veth's broadcast
 * address, so it hears and reaches only the namespace); the daemons and Chromium run inside.
 * Blocks move daemon to daemon over TCP, daemon to browser and back through the bridge; the
 * server's own block store serves none of them.
 */

const MiB = 1024 * 1024;
const SYNC_MS = 90_000;
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe.skipIf(!isRoot())('an office: two LAN daemons and a browser through the server bridge', () => {
  let harness: NetnsHarness;
  let server: NetnsTestServer;
  let scratch: string;
  const daemons = new DaemonPool();
  const udpPort = lanTestUdpPort();
  let broadcast: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'nearsync-lan-office-'));
    harness = await NetnsHarness.start();
    broadcast = harness.ns.broadcastAddress;
    server = await harness.startServer({
      lanBridge: { udpPort, tcpPort: 0, bindAddress: harness.ns.hostAddress, udpListenAddress: broadcast, broadcastAddresses: [broadcast] },
    });
  }, 180_000);

  afterAll(async () => {
    await daemons.stopAll();
    await harness?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }, 60_000);

  const served = () => server.server.metrics().blockBytesServed;
  const bridge = (): LanBridgeMetrics => server.server.metrics().lanBridge!;
  const contentOf = async (path: string) => sha256(await readFile(path).catch(() => Buffer.alloc(0)));
  const withOutput = (error: Error, ...peers: [string, DaemonProcess][]) =>
    new Error([error.message, ...peers.map(([name, daemon]) => `--- daemon ${name} ---\n${daemon.output}`)].join('\n'));

  it('a file in daemon A reaches daemon B and the browser, the browser\'s upload reaches both folders, and no block comes from the server', async () => {
    const member = await createWorkspace(server.hostUrl, 'lan office');
    const dirA = join(scratch, 'a');
    const dirB = join(scratch, 'b');
    await mkdir(dirA, { recursive: true });
    const plan = randomBytes(9 * MiB + 4321); // three blocks
    await writeFile(join(dirA, 'plan.bin'), plan);
    const start = (dir: string) =>
      daemons.start({ netns: harness.ns, server: server.hostUrl, invite: member.inviteUrl, dir, lan: { port: udpPort, tcpPort: 0, broadcast } });

    // A commits its file (uploading it: the server needs every committed block).
    const a = start(dirA);
    await a.waitFor(/in sync at journal entry 1\b/, SYNC_MS);
    const servedBefore = served();

    // B joins: it finds A on the LAN and takes the file from it.
    const b = start(dirB);
    await until(async () => (await contentOf(join(dirB, 'plan.bin'))) === sha256(plan), SYNC_MS, 'plan.bin at B').catch((error: Error) => {
      throw withOutput(error, ['A', a], ['B', b]);
    });
    await b.waitFor(/in sync at journal entry 1\b/, SYNC_MS);

    // The browser joins: the relay lists A and B as LAN peers, and the bridge carries their blocks.
    // A socket of the workspace first, so that the bridge has heard A and B before the page
    // asks (on a loaded machine the page's wait for LAN adverts, 1.5 s, can run out first).
    const watcher = await RelayClient.connect(server.hostUrl, { tokens: [member.token] });
    const lanPeersListed = async () => {
      await new Promise((resolve) => setTimeout(resolve, 200)); // a peers request is an event: keep under the rate limit
      return (await watcher.peers(member.ns)).peers.filter((p: { lan?: boolean }) => p.lan === true).length === 2;
    };
    await until(lanPeersListed, SYNC_MS, 'A and B bridged').catch(
      (error: Error) => {
        throw withOutput(error, ['A', a], ['B', b]);
      },
    );
    watcher.close();
    const page = await (await harness.newBrowser()).newPage();
    const shareLink = `${server.origin}${new URL(member.inviteUrl).pathname}${new URL(member.inviteUrl).hash}`;
    await joinWithLink(page, shareLink, member.ns);
    await waitForAllSynced(page, plan.length, SYNC_MS).catch((error: Error) => {
      throw withOutput(error, ['A', a], ['B', b]);
    });
    expect((await saveFileAndHash(page, 'plan.bin')).sha256).toBe(sha256(plan));
    const rows = await waitForPeerRows(page, (list) => list.length === 2 && list.every((row) => row.cursor === 1));
    expect(rows.map((row) => row.label).sort()).toEqual(expect.arrayContaining([expect.stringMatching(/^LAN peer [0-9a-f]{8}$/)]));
    expect(rows.every((row) => row.connected)).toBe(true);
    expect(rows.reduce((sum, row) => sum + row.bytesReceived, 0)).toBe(plan.length);
    // Nothing sent is attributed to a LAN peer (the bridge reads for the LAN as a whole): no such figure on their rows.
    expect(rows.every((row) => row.bytesSent === 0 && !row.sentShown)).toBe(true);
    expect(bridge().bytesLanToBrowsers).toBeGreaterThanOrEqual(plan.length);
    expect(served() - servedBefore).toBe(0);

    // The browser uploads a file: it reaches both folders from the browser (through the
    // bridge) or from each other, not from the server.
    const notes = randomBytes(5 * MiB + 99); // two blocks
    const notesPath = join(scratch, 'notes.bin');
    await writeFile(notesPath, notes);
    const toLanBefore = bridge().bytesBrowsersToLan;
    await uploadThroughPicker(page, [notesPath]);
    await waitForUploadsDone(page, ['notes.bin'], SYNC_MS);
    for (const [name, dir] of [['A', dirA], ['B', dirB]] as const) {
      await until(async () => (await contentOf(join(dir, 'notes.bin'))) === sha256(notes), SYNC_MS, `notes.bin at ${name}`).catch((error: Error) => {
        throw withOutput(error, ['A', a], ['B', b]);
      });
    }
    expect(served() - servedBefore).toBe(0);
    // At least one copy crossed the bridge from the browser; the other daemon may have had it from its neighbour.
    expect(bridge().bytesBrowsersToLan - toLanBefore).toBeGreaterThanOrEqual(notes.length);
    console.log(
      `office: ${plan.length} bytes A → B and the browser, ${notes.length} bytes browser → A and B; ` +
        `bridge carried ${bridge().bytesLanToBrowsers} bytes to the browser and ${bridge().bytesBrowsersToLan} to the LAN; server block bytes ${served() - servedBefore}`,
    );
    expect(await a.stop()).toBe(0);
    expect(await b.stop()).toBe(0);
  }, 240_000);

  it('a LAN peer that streams a block with one bad piece is banned, the browser stores nothing of it and takes the block from the server', async () => {
    const member = await createWorkspace(server.hostUrl, 'lan office hostile');
    const file = randomBytes(2 * MAX_BLOCK_SIZE + 4321);
    const blocks = [0, MAX_BLOCK_SIZE, 2 * MAX_BLOCK_SIZE].map((at) => file.subarray(at, at + MAX_BLOCK_SIZE));
    await commitFile(server.hostUrl, member, 'plan.bin', blocks.map((bytes) => ({ bytes, hash: sha256(bytes) as BlockHash })));
    // A member's LAN peer (it holds the LAN key) that claims the file and streams every block
    // whole but for one flipped byte in piece 20 (the last piece of the short block): only the
    // bridge's verdict can tell.
    const lies = new Map(blocks.map((bytes) => {
      const lie = Buffer.from(bytes);
      lie[Math.min(20 * PIECE_SIZE + 7, lie.length - 1)] ^= 1;
      return [sha256(bytes), new Uint8Array(lie)];
    }));
    const lanKey = lanKeyBytes((await api(server.hostUrl, 'GET', `/api/v1/ns/${member.ns}/lan-key`, { token: member.token })).body);
    const peerId = new Uint8Array(randomBytes(16));
    const hostile = new LanBlockServer({
      host: harness.ns.hostAddress,
      port: 0,
      peerId,
      store: { getBlock: async (hash) => lies.get(hash) ?? null, hasBlocks: async () => new Set(), putBlock: async () => undefined },
      isLiveBlock: async () => true,
      cursorOf: () => 1,
    });
    hostile.setNamespace(member.ns, lanKey);
    const { port } = await hostile.listen();
    const advertiser = new LanAdvertiser({ tcpPort: port, broadcastAddress: broadcast, port: udpPort, bindAddress: harness.ns.hostAddress, peerId });
    advertiser.setNamespace(member.ns, lanKey, 1);
    // A socket of the workspace first, so the bridge listens with its key before the peer advertises.
    const namespacesBefore = bridge().namespaces;
    const watcher = await RelayClient.connect(server.hostUrl, { tokens: [member.token] });
    try {
      await until(() => bridge().namespaces > namespacesBefore, 10_000, 'the workspace bridged');
      await advertiser.start();
      await watcher.next('advert', (a) => a.lan === true && a.ns === member.ns, SYNC_MS);
      const before = bridge();
      const servedBefore = served();
      const page = await (await harness.newBrowser()).newPage();
      const shareLink = `${server.origin}${new URL(member.inviteUrl).pathname}${new URL(member.inviteUrl).hash}`;
      await joinWithLink(page, shareLink, member.ns);
      await waitForAllSynced(page, file.length, SYNC_MS);
      // The file the browser holds is the committed one: no piece of the lie was stored.
      expect((await saveFileAndHash(page, 'plan.bin')).sha256).toBe(sha256(file));
      const after = bridge();
      expect(after.fetchesFailed.bad_block - before.fetchesFailed.bad_block).toBeGreaterThanOrEqual(1);
      expect(after.lanPeersBanned).toBeGreaterThan(before.lanPeersBanned);
      expect(after.fetchesOk).toBe(before.fetchesOk);
      // Every block came from the server in the end.
      expect(served() - servedBefore).toBeGreaterThanOrEqual(file.length);
    } finally {
      watcher.close();
      await advertiser.close();
      await hostile.close();
    }
  }, 240_000);
});
