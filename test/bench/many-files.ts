import { createHash } from 'node:crypto';
import type { Page } from 'playwright-core';
import { ServerApi } from '../../src/engine/server-api.ts';
import { inviteFromLink, type BlockHash, type FilePath, type NamespaceId } from '../../src/protocol/index.ts';
import type { E2eHarness, TestServer } from '../e2e/harness.ts';
import { joinWithLink } from '../e2e/ui.ts';
import type { BenchRow } from './report.ts';

/**
 * A workspace of many small files (0.2–3 KiB, nested folders) joined by a fresh browser on
 * loopback: files per second, main-thread blocking (long tasks) during the whole join, and the
 * most file-table rows the DOM held. The same-run floor is the page reading the whole journal
 * with plain fetches (no join can be faster than learning what the files are).
 */

export interface ManyFilesWorkspace {
  namespaceId: NamespaceId;
  shareLink: string;
  token: string;
  files: number;
  totalBytes: number;
}

const SEED_PARALLEL = 16;

/** Deterministic tree: 10 top folders × 10 subfolders × files spread among them. */
export function manyFilesPath(index: number): string {
  const top = index % 10;
  const sub = Math.floor(index / 10) % 10;
  return `project-${top}/part-${sub}/file-${String(index).padStart(6, '0')}.txt`;
}

function fileBytes(index: number): Buffer {
  const size = 200 + ((index * 2654435761) % 2873);
  const bytes = Buffer.alloc(size);
  let state = (index + 1) * 0x9e3779b1;
  for (let i = 0; i < size; i++) {
    state = (state ^ (state << 13)) >>> 0;
    state = (state ^ (state >>> 17)) >>> 0;
    state = (state ^ (state << 5)) >>> 0;
    bytes[i] = 32 + (state % 95);
  }
  return bytes;
}

export async function seedManyFiles(server: TestServer, count: number, log: (line: string) => void): Promise<ManyFilesWorkspace> {
  const created = await new ServerApi(server.origin).createWorkspace(`many files ${count}`);
  const api = new ServerApi(server.origin, created.token);
  const invite = inviteFromLink(created.inviteUrl)!;
  let next = 0;
  let totalBytes = 0;
  const began = performance.now();
  const worker = async () => {
    for (;;) {
      const index = next++;
      if (index >= count) return;
      const bytes = fileBytes(index);
      const hash = createHash('sha256').update(bytes).digest('hex') as BlockHash;
      await api.putBlock(hash, bytes);
      const result = await api.commit(created.namespaceId, {
        path: manyFilesPath(index) as FilePath,
        size: bytes.length,
        mtime: 1_700_000_000_000 + index * 1000,
        blocks: [hash],
        deleted: false,
      });
      if ('need' in result) throw new Error(`seeding ${manyFilesPath(index)}: the server still needs its block`);
      totalBytes += bytes.length;
      if (index > 0 && index % 10_000 === 0) log(`many-files: seeded ${index} files`);
    }
  };
  await Promise.all(Array.from({ length: SEED_PARALLEL }, worker));
  log(`many-files: seeded ${count} files in ${((performance.now() - began) / 1000).toFixed(1)} s`);
  return {
    namespaceId: created.namespaceId,
    shareLink: `${server.origin}/w/${created.namespaceId}#invite=${invite}`,
    token: created.token,
    files: count,
    totalBytes,
  };
}

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

export async function benchManyFiles(harness: E2eHarness, counts: number[], log: (line: string) => void): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const count of counts) {
    const server = await harness.startServer();
    const workspace = await seedManyFiles(server, count, log);
    const context = await harness.newBrowser();
    try {
      const page = await context.newPage();
      await page.addInitScript(PAGE_PROBE);
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
      };
      log(`many-files ${count}: ${JSON.stringify(row)}`);
      rows.push(row);
    } finally {
      await context.close();
    }
  }
  return rows;
}
