import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsHarness } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { startScaledDeployment, type ScaledDeployment } from '../netns/scaled-deployment.ts';
import { provisionScaleOutEngines, type ScaleOutEngines } from '../support/scale-out-engines.ts';
import { until } from '../support/until.ts';
import { byteCounters, waitForPeerRows } from './support/peer-view.ts';
import { createWorkspace, joinWithLink, overallProgress, saveFileAndHash, uploadThroughPicker, waitForAllSynced, waitForUploadsDone } from './ui.ts';

/**
 * The browser peer test once more, on two server instances behind nginx (PostgreSQL for
 * the journal, Redis for the relay, one shared block directory): browsers whose relay
 * sockets sit on different instances still find and sync from each other, and an instance
 * can go away mid-sync.
 */

const MiB = 1024 * 1024;

describe.skipIf(!isRoot())('two server instances behind nginx', () => {
  let harness: NetnsHarness;
  let engines: ScaleOutEngines;
  let files: string;
  const stoppers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    files = await mkdtemp(join(tmpdir(), 'nearsync-scaled-'));
    harness = await NetnsHarness.start();
    engines = await provisionScaleOutEngines();
  }, 180_000);

  afterAll(async () => {
    for (const stop of stoppers.splice(0).reverse()) await stop().catch(() => undefined);
    await harness?.close();
    await engines?.teardown();
    await rm(files, { recursive: true, force: true });
  }, 60_000);

  async function tempFile(name: string, bytes: Uint8Array): Promise<string> {
    const path = join(files, name);
    await writeFile(path, bytes);
    return path;
  }
  const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

  async function deploy(server: Parameters<typeof startScaledDeployment>[1]['server'] = {}): Promise<ScaledDeployment> {
    const deployment = await startScaledDeployment(harness, { instances: 2, backends: engines.backends, server });
    stoppers.push(() => deployment.close());
    return deployment;
  }

  /** A browser of its own (own Chromium process, own IndexedDB), as on another machine. */
  async function device(): Promise<Page> {
    const context = await (await harness.launchSeparateBrowser()).newContext({ acceptDownloads: true });
    stoppers.push(() => context.close());
    return context.newPage();
  }

  it('A and B on different instances: adverts and signals cross, B syncs from A, no block bytes from the servers', async () => {
    const deployment = await deploy();
    const big = randomBytes(24 * MiB + 99);
    const small = Buffer.from('agenda\n');
    const total = big.length + small.length;
    const pageA = await device();
    const { namespaceId, shareLink } = await createWorkspace(pageA, deployment.origin, 'two-instances');
    await uploadThroughPicker(pageA, [await tempFile('plan.bin', big), await tempFile('agenda.txt', small)]);
    await waitForUploadsDone(pageA, ['plan.bin', 'agenda.txt'], 120_000);
    await waitForAllSynced(pageA, total, 60_000);
    await until(() => deployment.totals().relaySockets === 1, 20_000, "A's relay socket");
    const instanceOfA = deployment.metrics(0).relaySockets === 1 ? 0 : 1;

    const before = deployment.totals();
    const pageB = await device();
    await joinWithLink(pageB, shareLink, namespaceId);
    // nginx sends a new relay socket to the instance holding fewer: B's is on the other one.
    await until(() => deployment.metrics(1 - instanceOfA).relaySockets === 1, 20_000, "B's relay socket on the other instance");
    await waitForAllSynced(pageB, total, 120_000);

    const after = deployment.totals();
    expect(after.blockBytesServed - before.blockBytesServed).toBe(0);
    expect((await byteCounters(pageB)).fromServer).toBe('0 B');
    // Signals went both ways across the two instances: each relayed some.
    expect(deployment.metrics(0).signalsRelayed).toBeGreaterThan(0);
    expect(deployment.metrics(1).signalsRelayed).toBeGreaterThan(0);
    const rowsOfB = await waitForPeerRows(pageB, (rows) => rows.length === 1 && rows[0].cursor === 2 && rows[0].bytesReceived === total);
    expect(rowsOfB[0].connected).toBe(true);
    await waitForPeerRows(pageA, (rows) => rows.length === 1 && rows[0].cursor === 2);
    expect((await saveFileAndHash(pageB, 'plan.bin')).sha256).toBe(sha256(big));
    expect((await saveFileAndHash(pageB, 'agenda.txt')).sha256).toBe(sha256(small));
  }, 300_000);

  it('an instance stops mid-sync: the browser reconnects through nginx and finishes, and the relay still pairs peers', async () => {
    // Paced egress so B is still downloading from the servers when one of them stops.
    const deployment = await deploy({ egressBytesPerSecond: 6 * MiB });
    const big = randomBytes(40 * MiB + 5);
    const pageA = await device();
    const { namespaceId, shareLink } = await createWorkspace(pageA, deployment.origin, 'failover');
    await uploadThroughPicker(pageA, [await tempFile('archive.bin', big)]);
    await waitForUploadsDone(pageA, ['archive.bin'], 120_000);
    await pageA.context().close(); // B must use the servers
    await until(() => deployment.totals().relaySockets === 0, 20_000, "A's relay socket gone");

    const pageB = await device();
    await joinWithLink(pageB, shareLink, namespaceId);
    // Which instance holds B's relay socket is settled first: waiting for it after the quarter
    // mark let a loaded machine finish the download before the stop.
    await until(() => deployment.totals().relaySockets === 1, 20_000, "B's relay socket");
    const instanceOfB = deployment.metrics(0).relaySockets === 1 ? 0 : 1;
    await pageB.waitForFunction(
      (expected) => {
        const element = document.querySelector('[data-testid="overall-progress"]');
        const done = Number(element?.getAttribute('data-done-bytes'));
        return Number(element?.getAttribute('data-total-bytes')) === expected && done >= expected / 4;
      },
      big.length,
      { polling: 50, timeout: 120_000 },
    );
    // Stop the instance holding B's relay socket: both its HTTP calls and its relay move. The
    // progress is read as the stop begins: the instance's close drains the requests it is
    // answering, while B goes on with the other instance.
    const atStop = await overallProgress(pageB);
    expect(atStop.done, 'B finished before the instance stopped: use a bigger file').toBeLessThan(big.length);
    await deployment.stopInstance(instanceOfB);

    await waitForAllSynced(pageB, big.length, 180_000);
    expect((await saveFileAndHash(pageB, 'archive.bin')).sha256).toBe(sha256(big));
    // B's relay socket came back through nginx, on the surviving instance.
    const survivor = 1 - instanceOfB;
    await until(() => deployment.metrics(survivor).relaySockets === 1, 30_000, "B's relay socket on the surviving instance");

    // C joins now and pulls everything from B through the surviving instance's relay.
    const served = deployment.totals().blockBytesServed;
    const pageC = await device();
    await joinWithLink(pageC, shareLink, namespaceId);
    await waitForAllSynced(pageC, big.length, 120_000);
    expect(deployment.totals().blockBytesServed - served).toBe(0);
    expect((await saveFileAndHash(pageC, 'archive.bin')).sha256).toBe(sha256(big));
  }, 300_000);
});
