import { randomUUID } from 'node:crypto';
import type { Page } from 'playwright-core';
import { ServerApi } from '../../src/engine/server-api.ts';
import type { E2eHarness } from '../e2e/harness.ts';
import { joinWithLink, waitForAllSynced } from '../e2e/ui.ts';
import { PseudoRandomFile } from '../support/pseudo-random-file.ts';
import { manyFilesBytes, manyFilesPath, seedManyFiles } from '../e2e/support/seed-many-files.ts';
import { RssSampler, chromiumCpuSeconds, chromiumProcesses, chromiumRss, markerSwitch, rssColumns, totalOf, PROCESS_TYPES, type ByProcessType } from './chromium-rss.ts';
import type { BenchRow } from './report.ts';
import { watchHeaps, type HeapReport } from './worker-heap.ts';
import { startMemoryDumps } from './memory-dumps.ts';

/**
 * Download as .zip of a workspace already synced into the browser (on-disk profile), written
 * into an origin-private file through the same FileSystemWritableFileStream a picked file
 * gets, against reading the same blocks from this origin's block files in the same browser
 * and run, in a worker, the fastest way (read-only sync access handles): the floor, since a
 * zip reads every block once and adds CRC and writes to it.
 * RSS of all the browser's processes from the idle page to the peak while the zip runs. Then
 * the same archive as a streamed download through the service worker (`download_*`: the way
 * out where there is no save dialog), against the same read baseline and the file-stream zip.
 *
 * The workspace: files of 16–64 MiB (multiples of 64 KiB, so every block is a block file the
 * baseline reads too) in four folders, S MiB in all.
 *
 * The bare sink is measured with the block Files grouped into one Blob per write, in each of
 * `sinkFilesPerWrite` group sizes (`bare_write_mbps`: 4, 16 MiB writes; others as
 * `bare_write_<n>_mbps`), to see whether larger writes raise the sink's own rate, and with all
 * of them in one write (`bare_write_one_blob_mbps`: the sink's ceiling).
 */

const MiB = 1024 * 1024;
const SETTLE_MS = 3_000;
const ZIP_TIMEOUT_MS = 60 * 60_000;

type Log = (message: string) => void;

/** Answers the save dialog with OPFS `zip-out/<name>` (a real FileSystemFileHandle). */
const SAVE_DIALOG_TO_OPFS = () => {
  (window as unknown as { showSaveFilePicker: unknown }).showSaveFilePicker = async (options: { suggestedName: string }) => {
    const root = await navigator.storage.getDirectory();
    const folder = await root.getDirectoryHandle('zip-out', { create: true });
    return folder.getFileHandle(options.suggestedName, { create: true });
  };
};

function workspaceFiles(sizeMiB: number): { path: string; size: number }[] {
  const files: { path: string; size: number }[] = [];
  let left = sizeMiB * MiB;
  for (let i = 0; left > 0; i++) {
    const size = Math.min(left, (16 + ((i * 37) % 49)) * MiB);
    files.push({ path: `set-${i % 4}/clip-${String(i).padStart(3, '0')}.bin`, size });
    left -= size;
  }
  return files;
}

/**
 * The archive's exact length: stored entries with data descriptors; an entry of 4 GiB or more
 * has zip64 sizes (20 bytes in its local header, 8 more in its descriptor, 16 in its central
 * header), an entry starting at 4 GiB or later a zip64 offset in its central header, and the
 * zip64 end record and locator come before the end record from 65,535 entries or when the
 * central directory starts (or is) 4 GiB or more (APPNOTE 4.5.3, 4.3.14).
 */
function expectedZipBytes(files: { path: string; size: number }[]): number {
  const encoder = new TextEncoder();
  const MAX_32 = 0xffffffff;
  let offset = 0;
  let directory = 0;
  // In the archive's order (the folder tree's, by path): it decides which entries start past 4 GiB.
  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    const name = encoder.encode(file.path).length;
    const bigSize = file.size >= MAX_32;
    const bigOffset = offset >= MAX_32;
    const zip64Central = (bigSize ? 16 : 0) + (bigOffset ? 8 : 0);
    directory += 46 + name + 9 + (zip64Central > 0 ? 4 + zip64Central : 0);
    offset += 30 + name + 9 + (bigSize ? 20 : 0) + file.size + (bigSize ? 24 : 16);
  }
  const zip64End = files.length >= 0xffff || offset >= MAX_32 || directory >= MAX_32;
  return offset + directory + 22 + (zip64End ? 56 + 20 : 0);
}

/**
 * Reads every block file of this origin once, in a worker (as the zip does), each whole: through
 * a read-only sync access handle (the fastest way, the zip's own) and, for comparison, as a
 * File's arrayBuffer() (how Open and Save read, and how IndexedDB values read); then writes
 * them all into a file stream with nothing else (the sink's own ceiling). Seconds of each.
 */
interface BlockReads {
  syncSeconds: number;
  fileSeconds: number;
  /** Seconds to write every block File into a file stream, by Files per write. */
  writeSeconds: Record<number, number>;
  bytes: number;
}

async function readAllBlocks(page: Page, filesPerWrite: readonly number[]): Promise<BlockReads> {
  return page.evaluate(async (groupings) => {
    const source = `
      const values = (dir) => dir.values();
      onmessage = async (event) => {
        const groupings = event.data;
        const root = await (await navigator.storage.getDirectory()).getDirectoryHandle('blocks');
        const handles = [];
        for await (const sub of values(root)) {
          if (sub.kind !== 'directory' || sub.name === 'tmp') continue;
          for await (const handle of values(sub)) if (handle.kind === 'file') handles.push(handle);
        }
        let began = performance.now();
        let bytes = 0;
        for (const handle of handles) {
          const access = await handle.createSyncAccessHandle({ mode: 'read-only' });
          const buffer = new Uint8Array(access.getSize());
          bytes += access.read(buffer, { at: 0 });
          access.close();
        }
        const syncSeconds = (performance.now() - began) / 1000;
        began = performance.now();
        for (const handle of handles) await (await handle.getFile()).arrayBuffer();
        const fileSeconds = (performance.now() - began) / 1000;
        // The sink alone: the same block Files into a file stream, n per write (the zip writes 16 MiB, four).
        const out = await (await navigator.storage.getDirectory()).getDirectoryHandle('zip-out', { create: true });
        const writeSeconds = {};
        for (const n of groupings) {
          const target = await out.getFileHandle('write-baseline.bin', { create: true });
          began = performance.now();
          const writable = await target.createWritable();
          // 0: every block File in one Blob, one write (the fewest round trips there can be).
          const step = n === 0 ? handles.length : n;
          for (let i = 0; i < handles.length; i += step) {
            const files = await Promise.all(handles.slice(i, i + step).map((handle) => handle.getFile()));
            await writable.write(new Blob(files));
          }
          await writable.close();
          writeSeconds[n] = (performance.now() - began) / 1000;
          await out.removeEntry('write-baseline.bin');
        }
        postMessage({ syncSeconds, fileSeconds, writeSeconds, bytes });
      };`;
    const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
    const worker = new Worker(url);
    try {
      return await new Promise<BlockReads>((resolve, reject) => {
        worker.onmessage = (event) => resolve(event.data);
        worker.onerror = (event) => reject(new Error(event.message));
        worker.postMessage(groupings);
      });
    } finally {
      worker.terminate();
      URL.revokeObjectURL(url);
    }
  }, [...filesPerWrite]);
}

/** Files per write of the bare sink that `bare_write_mbps` reports: the zip's 16 MiB writes. */
const ZIP_FILES_PER_WRITE = 4;

/** The bare sink's ceiling: every block File in one write (`bare_write_one_blob_mbps`). */
const ALL_IN_ONE_WRITE = 0;

export async function benchZip(harness: E2eHarness, sizeMiB: number, log: Log, sinkFilesPerWrite: readonly number[] = [ZIP_FILES_PER_WRITE]): Promise<BenchRow> {
  const groupings = [...new Set([ZIP_FILES_PER_WRITE, ...sinkFilesPerWrite, ALL_IN_ONE_WRITE])];
  const server = await harness.startServer();
  const files = workspaceFiles(sizeMiB);
  const created = await new ServerApi(server.origin).createWorkspace('zip bench');
  const api = new ServerApi(server.origin, created.token);
  log(`zip: uploading ${files.length} files, ${sizeMiB} MiB, to the server from Node`);
  for (const file of files) await new PseudoRandomFile(`zip ${file.path}`, file.size).commitTo(api, created.namespaceId, file.path);

  const tag = randomUUID();
  const browser = await harness.newProfileBrowser([markerSwitch(tag)]);
  try {
    const page = await browser.newPage();
    await page.addInitScript(SAVE_DIALOG_TO_OPFS);
    await joinWithLink(page, created.inviteUrl, created.namespaceId);
    await waitForAllSynced(page, sizeMiB * MiB, ZIP_TIMEOUT_MS);
    log('zip: workspace synced into the browser');

    // The baseline before runs in a tab of its own, closed before the zip: its discarded
    // buffers are not the zip's memory. The one after runs in the page that zipped.
    const baselinePage = await browser.newPage();
    await baselinePage.goto(`${server.origin}/`);
    const before = await readAllBlocks(baselinePage, groupings);
    await baselinePage.close();
    log(`zip: read every block file, before: ${before.syncSeconds.toFixed(1)} s (${(before.bytes / MiB).toFixed(0)} MiB; as Files ${before.fileSeconds.toFixed(1)} s; written to a file stream ${describeWrites(before.writeSeconds)})`);

    const { zipSeconds, zipBytes, idle, peak, cpu } = await zipInPage(page, tag, 'zip bench.zip');
    log(`zip: ${(zipBytes / MiB).toFixed(0)} MiB written in ${zipSeconds.toFixed(1)} s; RSS ${(totalOf(idle) / MiB).toFixed(0)} → peak ${(peak.total / MiB).toFixed(0)} MiB`);
    // The same archive as a streamed download (the way out without a save dialog): the
    // page's service worker answers it; timed until the browser has the whole file.
    const downloadPage = await browser.newPage();
    await downloadPage.addInitScript(() => {
      delete (Window.prototype as unknown as { showSaveFilePicker?: unknown }).showSaveFilePicker;
      delete (window as unknown as { showSaveFilePicker?: unknown }).showSaveFilePicker;
    });
    await downloadPage.goto(page.url());
    await downloadPage.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 60_000 });
    await downloadPage.getByTestId('download-zip').waitFor();
    const downloadStarted = performance.now();
    const started = downloadPage.waitForEvent('download', { timeout: ZIP_TIMEOUT_MS });
    await downloadPage.getByTestId('download-zip').click();
    const download = await started;
    const downloadedTo = await download.path();
    const downloadSeconds = (performance.now() - downloadStarted) / 1000;
    const downloadFailure = await download.failure();
    const { size: downloadBytes } = await import('node:fs/promises').then((fs) => fs.stat(downloadedTo));
    await downloadPage.close();
    log(`zip: the same as a streamed download: ${(downloadBytes / MiB).toFixed(0)} MiB in ${downloadSeconds.toFixed(1)} s${downloadFailure ? ` (failed: ${downloadFailure})` : ''}`);

    const after = await readAllBlocks(page, groupings);
    log(`zip: read every block file, after: ${after.syncSeconds.toFixed(1)} s (as Files ${after.fileSeconds.toFixed(1)} s; written to a file stream ${describeWrites(after.writeSeconds)})`);

    const readSeconds = (before.syncSeconds + after.syncSeconds) / 2;
    const contentBytes = sizeMiB * MiB;
    return {
      scenario: 'zip',
      size_mib: sizeMiB,
      files: files.length,
      zip_seconds: zipSeconds,
      zip_mbps: contentBytes / zipSeconds / 1e6,
      read_baseline_seconds: readSeconds,
      read_before_seconds: before.syncSeconds,
      read_after_seconds: after.syncSeconds,
      read_mbps: before.bytes / readSeconds / 1e6,
      read_as_files_mbps: (2 * before.bytes) / (before.fileSeconds + after.fileSeconds) / 1e6,
      bare_write_mbps: (2 * before.bytes) / (before.writeSeconds[ZIP_FILES_PER_WRITE] + after.writeSeconds[ZIP_FILES_PER_WRITE]) / 1e6,
      ...Object.fromEntries(
        groupings
          .filter((n) => n !== ZIP_FILES_PER_WRITE)
          .map((n) => [n === ALL_IN_ONE_WRITE ? 'bare_write_one_blob_mbps' : `bare_write_${n}_mbps`, (2 * before.bytes) / (before.writeSeconds[n] + after.writeSeconds[n]) / 1e6]),
      ),
      // The sink's ceiling against the goal's baseline: the bare file stream at its best (one
      // write of every block File) over reading the same Files. Below 0.7, no zip into this sink meets the goal.
      sink_ceiling_ratio_to_read_as_files: (before.fileSeconds + after.fileSeconds) / (before.writeSeconds[ALL_IN_ONE_WRITE] + after.writeSeconds[ALL_IN_ONE_WRITE]),
      ratio_to_bare_one_blob: (before.writeSeconds[ALL_IN_ONE_WRITE] + after.writeSeconds[ALL_IN_ONE_WRITE]) / 2 / zipSeconds,
      ratio: readSeconds / zipSeconds,
      ratio_to_read_as_files: (before.fileSeconds + after.fileSeconds) / 2 / zipSeconds,
      ratio_to_bare_write: (before.writeSeconds[ZIP_FILES_PER_WRITE] + after.writeSeconds[ZIP_FILES_PER_WRITE]) / 2 / zipSeconds,
      archive_length_ok: zipBytes === expectedZipBytes(files) ? 'yes' : `NO (${zipBytes} vs ${expectedZipBytes(files)})`,
      download_seconds: downloadSeconds,
      download_mbps: contentBytes / downloadSeconds / 1e6,
      download_ratio: readSeconds / downloadSeconds,
      download_to_file_stream_ratio: zipSeconds / downloadSeconds,
      download_length_ok: downloadBytes === expectedZipBytes(files) ? 'yes' : `NO (${downloadBytes} vs ${expectedZipBytes(files)})`,
      ...rssColumns(idle, peak),
      ...cpu,
    };
  } finally {
    await browser.close();
  }
}

/** Clicks Download as .zip once the page has settled; time, archive length, RSS idle and peak, CPU by process type. */
async function zipInPage(page: Page, tag: string, name: string) {
  await page.waitForTimeout(SETTLE_MS);
  const idle = chromiumRss(tag);
  const sampler = new RssSampler(tag);
  sampler.start();
  const cpuBefore = chromiumCpuSeconds(tag);
  const began = performance.now();
  await page.getByTestId('download-zip').click();
  await page.getByTestId('notice-info').filter({ hasText: `Saved ${name}` }).waitFor({ timeout: ZIP_TIMEOUT_MS });
  const zipSeconds = (performance.now() - began) / 1000;
  const cpu = cpuColumns(cpuBefore, chromiumCpuSeconds(tag));
  const peak = sampler.stop();
  const zipBytes = await page.evaluate(async (fileName) => {
    const root = await navigator.storage.getDirectory();
    return (await (await (await root.getDirectoryHandle('zip-out')).getFileHandle(fileName)).getFile()).size;
  }, name);
  return { zipSeconds, zipBytes, idle, peak, cpu };
}

function describeWrites(seconds: Record<number, number>): string {
  return Object.entries(seconds)
    .map(([n, s]) => `${s.toFixed(1)} s at ${n === String(ALL_IN_ONE_WRITE) ? 'all in one' : n} per write`)
    .join(', ');
}

/**
 * Download as .zip of a workspace of `count` small files (0.2–3 KiB, one block each, in
 * IndexedDB packs): time, files per second, and RSS of all the browser's processes from the
 * idle page to the peak during the zip (what the central directory and the stream hold).
 */
export async function benchZipManyFiles(harness: E2eHarness, count: number, log: Log): Promise<BenchRow> {
  const server = await harness.startServer();
  log(`zip: seeding ${count} small files`);
  const workspace = await seedManyFiles(server.origin, count, { log });
  const tag = randomUUID();
  const browser = await harness.newProfileBrowser([markerSwitch(tag)]);
  try {
    const page = await browser.newPage();
    await page.addInitScript(SAVE_DIALOG_TO_OPFS);
    await joinWithLink(page, workspace.shareLink, workspace.namespaceId);
    await waitForAllSynced(page, workspace.totalBytes, ZIP_TIMEOUT_MS);
    log(`zip: ${count} files synced into the browser`);
    const name = `many files ${count}.zip`;
    // The JS heaps of the page and its workers during the zip: peak, and what is alive at the end.
    const heaps = await watchHeaps(browser.browser()!);
    // NEARSYNC_BENCH_MEMORY_DUMPS=1: Chromium's memory-infra dumps (which allocator holds what) before and every 10 s during the zip.
    const dumps = process.env.NEARSYNC_BENCH_MEMORY_DUMPS ? await startMemoryDumps(browser.browser()!) : null;
    let dumping = Promise.resolve();
    const dumpTimer = dumps ? setInterval(() => (dumping = dumping.then(() => dumps.dump()).catch(() => {})), 10_000) : null;
    await dumps?.dump();
    const { zipSeconds, zipBytes, idle, peak, cpu } = await zipInPage(page, tag, name);
    if (dumps) {
      clearInterval(dumpTimer!);
      await dumping;
      await dumps.dump();
      const types = new Map(chromiumProcesses(tag).map(({ pid, type }) => [Number(pid), type]));
      const taken = await dumps.stop();
      const total = (sizes: Record<string, number> | undefined) => Object.entries(sizes ?? {}).filter(([key]) => !key.includes('/')).reduce((sum, [, mib]) => sum + mib, 0);
      for (const [pid, type] of types) {
        if (type !== 'renderer' && type !== 'browser') continue;
        const series = taken.map((dump) => dump.get(pid)).filter((sizes) => sizes !== undefined);
        if (series.length < 2) continue;
        const first = series[0]!;
        const top = series.reduce((best, sizes) => (total(sizes) > total(best) ? sizes : best), first)!;
        const growth = Object.keys(top)
          .map((key) => [key, Math.round(((top[key] ?? 0) - (first[key] ?? 0)) * 10) / 10] as const)
          .filter(([, mib]) => Math.abs(mib) >= 1)
          .sort((a, b) => b[1] - a[1]);
        log(`zip: memory-infra ${type} ${pid}, ${series.length} dumps: before ${total(first).toFixed(0)} MiB, largest ${total(top).toFixed(0)} MiB; growth by allocator: ${growth.map(([key, mib]) => `${key} ${mib}`).join(', ')}`);
        log(`zip: memory-infra ${type} ${pid} at the largest: ${Object.entries(top).filter(([, mib]) => mib >= 1).map(([key, mib]) => `${key} ${mib}`).join(', ')}`);
      }
    }
    const heapReports = await heaps.stop();
    for (const report of heapReports) log(`zip: JS heap of ${report.type} ${report.url}: peak ${report.peakUsedMiB} MiB, end ${report.endUsedMiB} MiB; live at the end: ${report.liveTop.map((top) => `${top.fn} ${top.mib}`).join(', ')}`);
    const files = Array.from({ length: count }, (_, index) => ({ path: manyFilesPath(index), size: manyFilesBytes(index).length }));
    const expected = expectedZipBytes(files);
    log(`zip: ${count} files, ${(zipBytes / MiB).toFixed(1)} MiB in ${zipSeconds.toFixed(1)} s; RSS ${(totalOf(idle) / MiB).toFixed(0)} → peak ${(peak.total / MiB).toFixed(0)} MiB`);
    return {
      scenario: 'zip-many-files',
      files: count,
      content_mib: workspace.totalBytes / MiB,
      zip_seconds: zipSeconds,
      files_per_second: count / zipSeconds,
      ...heapColumns(heapReports),
      archive_length_ok: zipBytes === expected ? 'yes' : `NO (${zipBytes} vs ${expected})`,
      ...rssColumns(idle, peak),
      ...cpu,
    };
  } finally {
    await browser.close();
  }
}

/** The peak JS heap of each worker and page, numbered in the order they were found. */
function heapColumns(reports: HeapReport[]): Record<string, number> {
  const columns: Record<string, number> = {};
  reports.forEach((report, i) => {
    columns[`heap_peak_mib_${report.type}${i}_${report.url.replace(/[^a-z0-9]+/gi, '_').slice(0, 24)}`] = report.peakUsedMiB;
  });
  return columns;
}

function cpuColumns(before: ByProcessType, after: ByProcessType): Record<string, number> {
  const columns: Record<string, number> = {};
  for (const type of PROCESS_TYPES) {
    const used = Math.max(0, after[type] - before[type]);
    if (used > 0) columns[`cpu_${type}_s`] = Math.round(used * 100) / 100;
  }
  return columns;
}
