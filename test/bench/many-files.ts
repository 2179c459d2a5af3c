import type { Page } from 'playwright-core';
import type { E2eHarness } from '../e2e/harness.ts';
import { seedManyFiles, type ManyFilesWorkspace } from '../e2e/support/seed-many-files.ts';
import { joinWithLink } from '../e2e/ui.ts';
import type { BenchRow } from './report.ts';
import { PROCESS_TYPES, chromiumCpuSeconds, markerSwitch, type ByProcessType } from './chromium-rss.ts';
import { profileWorkers } from './worker-profiler.ts';

/**
 * A workspace of many small files (0.2–3 KiB, nested folders) joined by a fresh browser on
 * loopback: files per second, main-thread blocking (long tasks) during the whole join, and the
 * most file-table rows the DOM held. The same-run floor is the page reading the whole journal
 * with plain fetches (no join can be faster than learning what the files are).
 */

/** Runs in the page before the app: records long tasks and the most table rows seen. */
const PAGE_PROBE = () => {
  const probe = { longTasks: [] as number[], maxRows: 0 };
  (window as unknown as { __nearsyncProbe: typeof probe }).__nearsyncProbe = probe;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) probe.longTasks.push(entry.duration);
  }).observe({ type: 'longtask', buffered: true });
  setInterval(() => {
    const rows = document.querySelectorAll('[role="row"]').length;
    if (rows > probe.maxRows) probe.maxRows = rows;
  }, 250);
};

async function timeJournalRead(page: Page, workspace: ManyFilesWorkspace): Promise<number> {
  return page.evaluate(async ({ ns, token }) => {
    const began = performance.now();
    let cursor = 0;
    for (;;) {
      const response = await fetch(`/api/v1/ns/${ns}/journal?cursor=${cursor}&limit=1000`, { headers: { Authorization: `Bearer ${token}` } });
      const page = (await response.json()) as { entries: { sjid: number }[]; more: boolean };
      if (page.entries.length > 0) cursor = page.entries[page.entries.length - 1].sjid;
      if (!page.more) break;
    }
    return (performance.now() - began) / 1000;
  }, { ns: workspace.namespaceId, token: workspace.token });
}

export async function benchManyFiles(harness: E2eHarness, counts: number[], log: (line: string) => void, profilePrefix?: string): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const count of counts) {
    const server = await harness.startServer();
    const workspace = await seedManyFiles(server.origin, count, { log });
    // A fresh on-disk profile, as a user's browser (an off-the-record context keeps IndexedDB in
    // memory). Profiling attaches to workers through the shared browser instead, which a
    // persistent context does not expose.
    const tag = `many-files-${count}-${process.pid}`;
    const context = profilePrefix ? await harness.newBrowser() : await harness.newProfileBrowser([markerSwitch(tag)]);
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      await page.addInitScript(PAGE_PROBE);
      const profiler = profilePrefix ? await profileWorkers(harness.browser) : null;
      const cpuBefore = chromiumCpuSeconds(tag);
      const serverCpuBefore = process.cpuUsage();
      const began = performance.now();
      await joinWithLink(page, workspace.shareLink, workspace.namespaceId);
      await page.waitForFunction(
        (expected) => {
          const element = document.querySelector('[data-testid="overall-progress"]');
          return element !== null && Number(element.getAttribute('data-total-bytes')) === expected && Number(element.getAttribute('data-done-bytes')) === expected;
        },
        workspace.totalBytes,
        { timeout: 0, polling: 250 },
      );
      const seconds = (performance.now() - began) / 1000;
      const serverCpu = process.cpuUsage(serverCpuBefore);
      const cpu = cpuColumns(cpuBefore, chromiumCpuSeconds(tag), (serverCpu.user + serverCpu.system) / 1e6, seconds);
      for (const { file, top } of (await profiler?.stop(`${profilePrefix}-${count}`)) ?? []) {
        log(`many-files ${count}: worker profile ${file}; heaviest self time:\n${top.map((t) => `  ${String(t.selfMs).padStart(7)} ms  ${t.fn}`).join('\n')}`);
      }
      const probe = await page.evaluate(() => (window as unknown as { __nearsyncProbe: { longTasks: number[]; maxRows: number } }).__nearsyncProbe);
      const journalSeconds = await timeJournalRead(page, workspace);
      const blocking = probe.longTasks.reduce((sum, duration) => sum + Math.max(0, duration - 50), 0);
      const row: BenchRow = {
        scenario: 'many-files',
        files: count,
        bytes: workspace.totalBytes,
        join_seconds: seconds,
        files_per_second: count / seconds,
        journal_read_seconds: journalSeconds,
        long_tasks: probe.longTasks.length,
        total_blocking_ms: Math.round(blocking),
        longest_task_ms: Math.round(Math.max(0, ...probe.longTasks)),
        max_dom_rows: probe.maxRows,
        ...(profilePrefix ? {} : cpu),
      };
      log(`many-files ${count}: ${JSON.stringify(row)}`);
      rows.push(row);
    } finally {
      await context.close();
    }
  }
  return rows;
}

/**
 * CPU seconds used during the join by each Chromium process type and by the server (this
 * process: the server runs in it, and the bench itself idles while the page works), and how
 * busy the machine's cores were with it: where the time goes when the join is not CPU-bound.
 */
function cpuColumns(before: ByProcessType, after: ByProcessType, serverSeconds: number, wallSeconds: number): Record<string, number> {
  const round = (value: number) => Math.round(value * 100) / 100;
  const columns: Record<string, number> = {};
  let chromium = 0;
  for (const type of PROCESS_TYPES) {
    const used = Math.max(0, after[type] - before[type]);
    chromium += used;
    if (used > 0) columns[`cpu_${type}_s`] = round(used);
  }
  columns.cpu_chromium_s = round(chromium);
  columns.cpu_server_s = round(serverSeconds);
  columns.cpu_per_wall = round((chromium + serverSeconds) / wallSeconds);
  return columns;
}
