import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { ServerApi } from '../../src/engine/server-api.ts';
import { inviteFromLink, type BlockHash, type NamespaceId } from '../../src/protocol/index.ts';
import { makeTempDir, sha256OfFile, type E2eHarness, type TestServer } from '../e2e/harness.ts';
import { createWorkspace, fileRow, joinWithLink, overallProgress, uploadThroughPicker, waitForRole } from '../e2e/ui.ts';
import type { NetnsHarness } from '../netns/harness.ts';
import { PseudoRandomFile } from '../support/pseudo-random-file.ts';
import { PROCESS_TYPES, RssSampler, chromiumCpuSeconds, chromiumRss, markerSwitch, rssColumns, totalOf, type RssByType } from './chromium-rss.ts';
import { measureRawChannel } from './raw-channel.ts';
import { profileWorkers } from './worker-profiler.ts';
import type { BigFileRow } from './flags.ts';
import type { BenchRow } from './report.ts';

/**
 * One multi-GiB file through the app, with the memory it costs: download from the server
 * (share link → every block in IndexedDB) next to a plain `fetch` of the same blocks from the
 * same page, upload through the file picker, and download from a peer over WebRTC. Each row runs in a Chromium of its own so
 * its RSS (all its processes, per process type) is measured from its idle page to the peak
 * while the transfer runs. The result is checked byte-exact by saving the file through the
 * app (Save composes the stored blocks) and hashing the download.
 */

const MiB = 1024 * 1024;
const FETCH_PARALLEL = 4;
const SETTLE_MS = 3_000;
const TRANSFER_TIMEOUT_MS = 60 * 60_000;
const RAW_CHANNEL_BYTES = 32 * MiB;

type Log = (message: string) => void;

export async function benchBigFile(harness: E2eHarness, sizeMiB: number, which: readonly BigFileRow[], log: Log): Promise<BenchRow[]> {
  const server = await harness.startServer();
  const rows: BenchRow[] = [];
  if (which.includes('download')) rows.push(await downloadFromServer(harness, server, sizeMiB, log));
  if (which.includes('upload')) rows.push(await uploadThroughApp(harness, server, sizeMiB, log));
  return rows;
}

/**
 * Browser B syncs the file from browser A over WebRTC (each its own Chromium with an
 * on-disk profile, in a network namespace), next to a bare data channel between two such
 * processes (the ceiling). Only B's RSS is measured.
 */
export async function benchBigFileFromPeer(harness: NetnsHarness, sizeMiB: number, log: Log): Promise<BenchRow> {
  const server = await harness.startServer();
  const file = new PseudoRandomFile(`big-file peer ${sizeMiB}`, sizeMiB * MiB);
  const writer = await new ServerApi(server.hostUrl).createWorkspace('big file peers');
  log(`big-file peer: uploading ${sizeMiB} MiB to the server from Node`);
  await file.commitTo(new ServerApi(server.hostUrl, writer.token), writer.namespaceId, 'big.bin');
  const shareLink = `${server.origin}/w/${writer.namespaceId}#invite=${inviteFromLink(writer.inviteUrl)}`;

  const contextA = await harness.newProfileBrowser();
  const pageA = await contextA.newPage();
  await joinWithLink(pageA, shareLink, writer.namespaceId);
  await waitForSynced(pageA, 'big.bin', null, (message) => log(`A: ${message}`));
  log('big-file peer: A holds the file; B joins');

  const tag = randomUUID();
  const contextB = await harness.newProfileBrowser([markerSwitch(tag)]);
  try {
    const pageB = await contextB.newPage();
    await pageB.goto(`${server.origin}/`);
    const idle = await idleRss(pageB, tag);
    const served = server.server.metrics().blockBytesServed;
    const sampler = new RssSampler(tag);
    sampler.start();
    const started = performance.now();
    await joinWithLink(pageB, shareLink, writer.namespaceId);
    await waitForSynced(pageB, 'big.bin', tag, (message) => log(`B: ${message}`));
    const seconds = (performance.now() - started) / 1000;
    const peak = sampler.stop();
    const serverBytes = server.server.metrics().blockBytesServed - served;
    log(`big-file peer: B synced in ${seconds.toFixed(1)} s (${serverBytes} bytes from the server); RSS ${mib(totalOf(idle))} → peak ${mib(peak.total)} MiB`);
    await contextA.close();
    const raw = await measureRawChannel(harness, 'processes', RAW_CHANNEL_BYTES).catch((error: unknown) => {
      log(`big-file peer: bare data channel failed: ${error instanceof Error ? error.message : String(error)}`);
      return null;
    });
    const exact = await savedFileMatches(pageB, 'big.bin', file, log);
    const syncMbps = file.size / seconds / 1e6;
    return {
      scenario: 'big-file-download-peer',
      size_mib: sizeMiB,
      sync_seconds: seconds,
      sync_mbps: syncMbps,
      raw_channel_mbps: raw?.mbps ?? null,
      ratio: raw ? syncMbps / raw.mbps : null,
      server_block_bytes: serverBytes,
      byte_exact: exact ? 'yes' : 'NO',
      ...rssColumns(idle, peak),
    };
  } finally {
    await contextB.close();
    await contextA.close();
  }
}

/** A Chromium of its own with an on-disk profile, tagged so its processes can be told from everyone else's. */
async function measuredBrowser(harness: E2eHarness): Promise<{ browser: BrowserContext; tag: string }> {
  const tag = randomUUID();
  return { browser: await harness.newProfileBrowser([markerSwitch(tag)]), tag };
}

async function idleRss(page: Page, tag: string): Promise<RssByType> {
  await page.waitForTimeout(SETTLE_MS);
  return chromiumRss(tag);
}

async function downloadFromServer(harness: E2eHarness, server: TestServer, sizeMiB: number, log: Log): Promise<BenchRow> {
  const file = new PseudoRandomFile(`big-file download ${sizeMiB}`, sizeMiB * MiB);
  const writer = await new ServerApi(server.origin).createWorkspace('big file download');
  const api = new ServerApi(server.origin, writer.token);
  log(`big-file: uploading ${sizeMiB} MiB to the server from Node`);
  const hashes = await file.commitTo(api, writer.namespaceId, 'big.bin');

  const { browser, tag } = await measuredBrowser(harness);
  try {
    // The baseline runs before and after the sync and the mean counts: load from others on
    // this shared machine comes and goes over minutes, and one side alone may miss it. The run
    // before is made from a tab of its own, closed before the sync: its discarded 4 MiB
    // buffers leave about 190 MiB in its renderer that neither a garbage collection nor a
    // memory-pressure signal returns (measured), and they are not the sync's memory. The run
    // after is made from the page that synced.
    const baselinePage = await browser.newPage();
    await baselinePage.goto(`${server.origin}/`);
    const fetchCpu = cpuMeter(tag);
    const fetchBefore = await timePlainFetch(baselinePage, server, writer.namespaceId, writer.token, hashes);
    const fetchCpuColumns = fetchCpu('fetch', fetchBefore);
    log(`big-file: plain fetch of the same blocks, before (a tab of its own): ${fetchBefore.toFixed(1)} s`);
    await baselinePage.close();
    const page = await browser.newPage();
    await page.goto(`${server.origin}/`);
    const idle = await idleRss(page, tag);
    log(`big-file: idle page RSS ${mib(totalOf(idle))} MiB: ${describeRss(idle)}`);
    const sampler = new RssSampler(tag);
    sampler.start();
    const syncCpu = cpuMeter(tag);
    // NEARSYNC_BENCH_PROFILE=PREFIX writes V8 CPU profiles of the page and the sync worker during the sync.
    const profilePrefix = process.env.NEARSYNC_BENCH_PROFILE;
    const profiler = profilePrefix ? await profileWorkers(browser.browser()!) : null;
    const started = performance.now();
    await joinWithLink(page, writer.inviteUrl, writer.namespaceId);
    await waitForSynced(page, 'big.bin', tag, log);
    const syncSeconds = (performance.now() - started) / 1000;
    const syncCpuColumns = syncCpu('sync', syncSeconds);
    for (const { file, top } of (await profiler?.stop(`${profilePrefix}-download`)) ?? []) {
      log(`big-file: profile ${file}; heaviest self time:\n${top.map((t) => `  ${String(t.selfMs).padStart(7)} ms  ${t.fn}`).join('\n')}`);
    }
    const peak = sampler.stop();
    log(`big-file: synced from the server in ${syncSeconds.toFixed(1)} s; RSS ${mib(totalOf(idle))} → peak ${mib(peak.total)} MiB`);

    const fetchAfter = await timePlainFetch(page, server, writer.namespaceId, writer.token, hashes);
    log(`big-file: plain fetch of the same blocks, after: ${fetchAfter.toFixed(1)} s`);
    const fetchSeconds = (fetchBefore + fetchAfter) / 2;
    // Save composes the stored block files into one Blob: its memory is measured too.
    const saveIdle = chromiumRss(tag);
    const saveSampler = new RssSampler(tag);
    saveSampler.start();
    const exact = await savedFileMatches(page, 'big.bin', file, log);
    const savePeak = saveSampler.stop();
    return {
      scenario: 'big-file-download-server',
      size_mib: sizeMiB,
      sync_seconds: syncSeconds,
      fetch_baseline_seconds: fetchSeconds,
      fetch_before_seconds: fetchBefore,
      fetch_after_seconds: fetchAfter,
      ratio: fetchSeconds / syncSeconds,
      byte_exact: exact ? 'yes' : 'NO',
      ...rssColumns(idle, peak),
      save_rss_growth_mib: mib(savePeak.total - totalOf(saveIdle)),
      ...syncCpuColumns,
      ...fetchCpuColumns,
    };
  } finally {
    await browser.close();
  }
}

async function uploadThroughApp(harness: E2eHarness, server: TestServer, sizeMiB: number, log: Log): Promise<BenchRow> {
  const file = new PseudoRandomFile(`big-file upload ${sizeMiB}`, sizeMiB * MiB);
  const dir = await makeTempDir('nearsync-bench-big-', []);
  const path = join(dir, 'upload.bin');
  const { browser, tag } = await measuredBrowser(harness);
  try {
    log(`big-file: writing a ${sizeMiB} MiB file to upload`);
    await file.writeTo(path);
    const page = await browser.newPage();
    const { namespaceId, shareLink } = await createWorkspace(page, server.origin, 'big file upload');
    await waitForRole(page, 'leader');
    const idle = await idleRss(page, tag);
    const sampler = new RssSampler(tag);
    sampler.start();
    const started = performance.now();
    await uploadThroughPicker(page, [path]);
    await waitForUploadDone(page, 'upload.bin', tag, log);
    const seconds = (performance.now() - started) / 1000;
    const peak = sampler.stop();
    log(`big-file: uploaded in ${seconds.toFixed(1)} s; RSS ${mib(totalOf(idle))} → peak ${mib(peak.total)} MiB`);
    const exact = await serverHoldsFile(server, shareLink, namespaceId as NamespaceId, 'upload.bin', file);
    return {
      scenario: 'big-file-upload',
      size_mib: sizeMiB,
      sync_seconds: seconds,
      fetch_baseline_seconds: null,
      ratio: null,
      byte_exact: exact ? 'yes' : 'NO',
      ...rssColumns(idle, peak),
    };
  } finally {
    await browser.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Waits for a file row to say synced, logging progress and failing on an error banner. */
async function waitForSynced(page: Page, path: string, tag: string | null, log: Log): Promise<void> {
  const deadline = Date.now() + TRANSFER_TIMEOUT_MS;
  let lastLog = 0;
  for (;;) {
    if ((await fileRow(page, path).getAttribute('data-status').catch(() => null)) === 'synced') return;
    const banner = await page.getByTestId('view-error').evaluate((element) => ((element as HTMLElement).hidden ? '' : (element.textContent ?? '')));
    if (Date.now() - lastLog > 10_000) {
      const { done, total } = await overallProgress(page).catch(() => ({ done: 0, total: 0 }));
      log(`big-file: ${mib(done)} / ${mib(total)} MiB; ${tag ? `RSS MiB ${describeRss(chromiumRss(tag))}` : ''}${banner ? `; banner: ${banner}` : ''}`);
      lastLog = Date.now();
    }
    if (Date.now() > deadline) throw new Error(`${path} not synced after ${TRANSFER_TIMEOUT_MS / 1000} s; banner: ${banner}`);
    await page.waitForTimeout(250);
  }
}

async function waitForUploadDone(page: Page, path: string, tag: string, log: Log): Promise<void> {
  const row = page.locator(`[data-testid="upload-row"][data-path="${path}"]`);
  const deadline = Date.now() + TRANSFER_TIMEOUT_MS;
  let lastLog = 0;
  for (;;) {
    const state = await row.getAttribute('data-state').catch(() => null);
    if (state === 'done') return;
    if (state === 'failed') throw new Error(`upload failed: ${await row.textContent()}`);
    if (Date.now() - lastLog > 10_000) {
      log(`big-file: upload ${state}: ${(await row.textContent().catch(() => ''))?.replace(/\s+/g, ' ')}; RSS MiB ${describeRss(chromiumRss(tag))}`);
      lastLog = Date.now();
    }
    if (Date.now() > deadline) throw new Error(`upload of ${path} not done after ${TRANSFER_TIMEOUT_MS / 1000} s`);
    await page.waitForTimeout(250);
  }
}

/**
 * CPU seconds from now until the returned function is called, by the Chromium process types
 * that do the work (renderer: page and sync worker; browser: storage and IPC; network) and by
 * the server (this process: the bench idles meanwhile), and cores kept busy per wall second.
 */
function cpuMeter(tag: string): (label: string, wallSeconds: number) => Record<string, number> {
  const before = chromiumCpuSeconds(tag);
  const serverBefore = process.cpuUsage();
  return (label, wallSeconds) => {
    const after = chromiumCpuSeconds(tag);
    const server = process.cpuUsage(serverBefore);
    const round = (value: number) => Math.round(value * 10) / 10;
    const columns: Record<string, number> = {};
    let total = (server.user + server.system) / 1e6;
    for (const type of ['renderer', 'browser', 'network'] as const) columns[`cpu_${label}_${type}_s`] = round(after[type] - before[type]);
    for (const type of PROCESS_TYPES) total += Math.max(0, after[type] - before[type]);
    columns[`cpu_${label}_server_s`] = round((server.user + server.system) / 1e6);
    columns[`cpu_${label}_per_wall`] = Math.round((total / wallSeconds) * 100) / 100;
    return columns;
  };
}

/** Seconds for the page to GET the same blocks with fetch (FETCH_PARALLEL at once), discarding them. */
async function timePlainFetch(page: Page, server: TestServer, ns: string, token: string, hashes: BlockHash[]): Promise<number> {
  return page.evaluate(
    async ({ origin, ns, token, hashes, parallel }) => {
      const started = performance.now();
      let next = 0;
      // No named functions in here: tsx would wrap them in a helper the page does not have.
      await Promise.all(Array.from({ length: parallel }, async () => {
        while (next < hashes.length) {
          const hash = hashes[next++];
          // no-store, as the app asks: the blocks were just fetched, and must come from the server again, not the HTTP cache.
          const response = await fetch(`${origin}/api/v1/blocks/${hash}?ns=${ns}`, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
          if (!response.ok) throw new Error(`GET answered ${response.status}`);
          await response.arrayBuffer();
        }
      }));
      return (performance.now() - started) / 1000;
    },
    { origin: server.origin, ns, token, hashes, parallel: FETCH_PARALLEL },
  );
}

/** Saves the file through the app's Save button and compares the download's SHA-256 with the source's. */
async function savedFileMatches(page: Page, path: string, file: PseudoRandomFile, log: Log): Promise<boolean> {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: TRANSFER_TIMEOUT_MS }), fileRow(page, path).getByTestId('save-file').click()]);
  const failure = await download.failure();
  if (failure) throw new Error(`saving ${path} failed: ${failure}`);
  const saved = await download.path();
  const matches = (await sha256OfFile(saved)) === file.sha256();
  await download.delete();
  log(`big-file: saved ${path} ${matches ? 'matches' : 'DIFFERS FROM'} the source`);
  return matches;
}

/** Whether the server's journal holds `path` with exactly the source's blocks. */
async function serverHoldsFile(server: TestServer, shareLink: string, ns: NamespaceId, path: string, file: PseudoRandomFile): Promise<boolean> {
  const { token } = await new ServerApi(server.origin).join(new URL(shareLink).hash.replace('#invite=', ''));
  const api = new ServerApi(server.origin, token);
  let cursor = 0;
  let latest: { size: number; blocks: BlockHash[] } | null = null;
  for (;;) {
    const page = await api.readJournal(ns, cursor);
    for (const entry of page.entries) if (entry.path === path) latest = entry;
    cursor = page.cursor;
    if (!page.more) break;
  }
  // The server hashes every block it receives, so the same hashes in order are the same bytes.
  const expected = file.blockHashes();
  return latest !== null && latest.size === file.size && latest.blocks.join() === expected.join();
}

function describeRss(rss: RssByType): string {
  return PROCESS_TYPES.map((type) => `${type} ${mib(rss[type])}`).join(', ');
}

function mib(bytes: number): number {
  return Math.round(bytes / MiB);
}
