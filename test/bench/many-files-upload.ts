import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { E2eHarness } from '../e2e/harness.ts';
import { manyFilesBytes, manyFilesPath } from '../e2e/support/seed-many-files.ts';
import { createWorkspace } from '../e2e/ui.ts';
import { PROCESS_TYPES, RssSampler, chromiumCpuSeconds, chromiumRss, markerSwitch, rssColumns } from './chromium-rss.ts';
import { UPLOAD_SOURCE_FLAGS, type UploadSourceFlag } from './flags.ts';
import type { BenchRow } from './report.ts';
import { profileWorkers } from './worker-profiler.ts';

/**
 * A folder of many small files dropped into a fresh browser (the folder picker, as a user
 * would): seconds from the pick until every file is committed, files per second, the most
 * upload rows the page held, main-thread long tasks, and Chromium's RSS and CPU per process
 * type, next to the same page merely reading every picked file once (`read_seconds`: the
 * floor of any upload, the browser handing over the bytes).
 */

const PAGE_PROBE = () => {
  const probe = { longTasks: [] as Array<{ start: number; duration: number }>, maxRows: 0, picked: [] as File[], changeAt: -1 };
  // The app clears its input once it has the files; keep them for the read floor.
  document.addEventListener(
    'change',
    (event) => {
      const input = event.target as HTMLInputElement;
      if (input.dataset?.testid !== 'folder-input') return;
      probe.changeAt = performance.now();
      probe.picked = [...(input.files ?? [])];
    },
    true,
  );
  (window as unknown as { __nearsyncProbe: typeof probe }).__nearsyncProbe = probe;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) probe.longTasks.push({ start: entry.startTime, duration: entry.duration });
  }).observe({ type: 'longtask', buffered: true });
  setInterval(() => {
    const rows = document.querySelectorAll('[data-testid="upload-row"]').length;
    if (rows > probe.maxRows) probe.maxRows = rows;
  }, 250);
};

async function writeFolder(count: number): Promise<{ root: string; folder: string; bytes: number }> {
  const root = await mkdtemp(join(tmpdir(), 'nearsync-bench-drop-'));
  const folder = join(root, 'drop');
  let bytes = 0;
  const made = new Set<string>();
  for (let i = 0; i < count; i++) {
    const path = join(folder, manyFilesPath(i));
    const dir = dirname(path);
    if (!made.has(dir)) {
      await mkdir(dir, { recursive: true });
      made.add(dir);
    }
    const content = manyFilesBytes(i);
    bytes += content.length;
    await writeFile(path, content);
  }
  return { root, folder, bytes };
}

/**
 * How the folder reaches the page: `drop`, dragged from the desktop (Chromium hands the page a
 * directory handle, walked by the sync worker; `showDirectoryPicker` takes the same path), or
 * `picker`, the folder input (a File per file, built by Chromium on the main thread).
 */
type UploadSource = UploadSourceFlag;

/** Drops a folder on the page through Chromium's own drag and drop, as the desktop would. */
async function dropFolder(page: import('playwright-core').Page, folder: string): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  const data = { items: [], files: [folder], dragOperationsMask: 1 };
  for (const type of ['dragEnter', 'dragOver', 'drop'] as const) await cdp.send('Input.dispatchDragEvent', { type, x: 200, y: 200, data });
  await cdp.detach();
}

export async function benchManyFilesUpload(
  harness: E2eHarness,
  counts: number[],
  log: (line: string) => void,
  profilePrefix?: string,
  sources: readonly UploadSource[] = UPLOAD_SOURCE_FLAGS,
): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const count of counts) {
    const { root, folder, bytes } = await writeFolder(count);
    log(`many-files-upload ${count}: wrote the folder (${(bytes / 1e6).toFixed(1)} MB)`);
    try {
      for (const source of sources) rows.push(await benchOne(harness, { count, source, folder, bytes }, log, profilePrefix));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }
  return rows;
}

async function benchOne(
  harness: E2eHarness,
  { count, source, folder, bytes }: { count: number; source: UploadSource; folder: string; bytes: number },
  log: (line: string) => void,
  profilePrefix?: string,
): Promise<BenchRow> {
  {
    const server = await harness.startServer();
    const tag = `many-files-upload-${source}-${count}-${process.pid}`;
    // Profiling attaches through the shared browser, which a persistent context does not expose.
    const context = profilePrefix ? await harness.newBrowser() : await harness.newProfileBrowser([markerSwitch(tag)]);
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      await page.addInitScript(PAGE_PROBE);
      await createWorkspace(page, server.origin, `upload ${count}`);
      const before = await server.metrics();
      const idle = chromiumRss(tag);
      const profiler = profilePrefix ? await profileWorkers(harness.browser) : null;
      const sampler = new RssSampler(tag);
      sampler.start();
      const cpuBefore = chromiumCpuSeconds(tag);
      const serverCpuBefore = process.cpuUsage();
      const began = performance.now();
      if (source === 'drop') await dropFolder(page, folder);
      else await page.getByTestId('folder-input').setInputFiles(folder, { timeout: 0 });
      const picked = performance.now();
      await page.waitForFunction(
        (expected) => {
          const totals = document.querySelector('[data-testid="upload-totals"]');
          const done = Number(totals?.getAttribute('data-done-files'));
          const failed = Number(totals?.getAttribute('data-failed-files'));
          return done + failed >= expected;
        },
        count,
        { timeout: 0, polling: 500 },
      );
      const seconds = (performance.now() - began) / 1000;
      const peak = sampler.stop();
      const cpuAfter = chromiumCpuSeconds(tag);
      const serverCpu = process.cpuUsage(serverCpuBefore);
      const after = await server.metrics();
      for (const { file, top } of (await profiler?.stop(`${profilePrefix}-upload-${source}-${count}`)) ?? []) {
        log(`many-files-upload ${count}: profile ${file}; heaviest self time:\n${top.map((t) => `  ${String(t.selfMs).padStart(7)} ms  ${t.fn}`).join('\n')}`);
      }
      const failed = Number(await page.getByTestId('upload-totals').getAttribute('data-failed-files'));
      const probe = await page.evaluate(() => {
        const { longTasks, maxRows, changeAt } = (
          window as unknown as { __nearsyncProbe: { longTasks: Array<{ start: number; duration: number }>; maxRows: number; changeAt: number } }
        ).__nearsyncProbe;
        return { longTasks, maxRows, changeAt };
      });
      // The task in which the picker's change event fires is mostly Chromium building the
      // FileList of the picked folder (profiled: 3.3 s of native time for 10,000 files, the
      // app's handler 52 ms of it); it is reported apart from the tasks of the upload itself.
      const pickTask = probe.longTasks.find((task) => task.start <= probe.changeAt && probe.changeAt <= task.start + task.duration);
      const uploadTasks = probe.longTasks.filter((task) => task !== pickTask).map((task) => task.duration);
      const readSeconds = source === 'picker' ? await timePickedRead(page) : null;
      const cpu: Record<string, number> = {};
      let chromium = 0;
      for (const type of PROCESS_TYPES) {
        const used = Math.max(0, cpuAfter[type] - cpuBefore[type]);
        chromium += used;
        if (used > 0.005) cpu[`cpu_${type}_s`] = Math.round(used * 100) / 100;
      }
      const row: BenchRow = {
        scenario: 'many-files-upload',
        source,
        files: count,
        bytes,
        upload_seconds: seconds,
        files_per_second: count / seconds,
        pick_seconds: (picked - began) / 1000,
        read_seconds: readSeconds,
        failed_files: failed,
        commits: after.commits - before.commits,
        commit_batches: after.commitBatches - before.commitBatches,
        block_batches: after.blockBatchesReceived - before.blockBatchesReceived,
        pick_task_ms: Math.round(pickTask?.duration ?? 0),
        long_tasks: uploadTasks.length,
        total_blocking_ms: Math.round(uploadTasks.reduce((sum, duration) => sum + Math.max(0, duration - 50), 0)),
        longest_task_ms: Math.round(Math.max(0, ...uploadTasks)),
        max_upload_rows: probe.maxRows,
        ...cpu,
        cpu_chromium_s: Math.round(chromium * 100) / 100,
        cpu_server_s: Math.round(((serverCpu.user + serverCpu.system) / 1e6) * 100) / 100,
        ...rssColumns(idle, peak),
      };
      log(`many-files-upload ${source} ${count}: ${JSON.stringify(row)}`);
      return row;
    } finally {
      await context.close();
    }
  }
}

/** The floor: the page reads every file the picker handed it once, four at a time. */
async function timePickedRead(page: import('playwright-core').Page): Promise<number> {
  return page.evaluate(async () => {
    const probe = (window as unknown as { __nearsyncProbe: { picked: File[] } }).__nearsyncProbe;
    const files = probe.picked;
    probe.picked = [];
    const began = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < files.length) await files[next++].arrayBuffer();
      }),
    );
    return (performance.now() - began) / 1000;
  });
}
