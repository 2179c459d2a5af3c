import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import type { CommitRequest, FilePath } from '../../src/protocol/index.ts';
import { E2eHarness, sha256 } from './harness.ts';
import { seedWorkspace } from './support/seed-workspace.ts';
import { fileRowPaths, joinWithLink, openFolder, saveFileAndHash, waitForAllSynced } from './ui.ts';

/**
 * The browser keeps its file table as a log of journal pages and folds it into a snapshot
 * once superseded records pile up. A workspace that churns (thousands of files created and
 * deleted) must come back after a reload with exactly its live files, from the compacted log.
 */

const KEPT = 10;
const CHURN_ROUNDS = 5;
const CHURN_FILES = 1000;

let harness: E2eHarness;

beforeAll(async () => {
  harness = await E2eHarness.start();
}, 120_000);

afterAll(async () => {
  await harness?.close();
});

describe('the file table log', () => {
  test('churn of 10,000 entries is compacted, and a reload shows exactly the live files', { timeout: 300_000 }, async () => {
    const server = await harness.startServer();
    const files = Array.from({ length: KEPT }, (_, i) => ({ path: `kept/file-${i}.txt`, bytes: Buffer.from(`kept file ${i}\n`.repeat(10 + i)) }));
    const seeded = await seedWorkspace(server.origin, 'churn', files);
    const api = new ServerApi(server.origin, seeded.token);
    const page = await (await harness.newBrowser()).newPage();
    page.on('pageerror', (error) => console.error('page error:', error.message));
    await joinWithLink(page, seeded.shareLink(server.origin), seeded.namespaceId);
    const keptBytes = files.reduce((sum, file) => sum + file.bytes.length, 0);
    await waitForAllSynced(page, keptBytes);

    // Rounds of 1,000 empty files created, then deleted: each round is pages of records the
    // live table no longer needs. The last round's files stay.
    let last = 0;
    for (let round = 0; round < CHURN_ROUNDS; round++) {
      const paths = Array.from({ length: CHURN_FILES }, (_, i) => `churn/round-${round}/f-${i}.txt` as FilePath);
      const create: CommitRequest[] = paths.map((path) => ({ path, size: 0, mtime: 1_700_000_000_000, blocks: [], deleted: false }));
      last = await commitAll(api, seeded.namespaceId, create);
      if (round === CHURN_ROUNDS - 1) break;
      // Let the browser read the creations as their own page before they go.
      await waitForCursor(page, last);
      last = await commitAll(api, seeded.namespaceId, paths.map((path) => ({ path, size: 0, mtime: 1_700_000_000_000, blocks: [], deleted: true })));
      await waitForCursor(page, last);
    }
    await waitForCursor(page, last);

    // Without compaction the log would hold every record the churn wrote (10 + 9 × 1,000 + 1,000).
    // Compaction folds once the records exceed twice the live files plus two snapshot parts, so
    // however the journal reads were paged, at most 2 × 1,010 + 2 × 1,000 records remain.
    const stored = await storedFilePages(page, seeded.namespaceId);
    const records = stored.reduce((sum, entry) => sum + entry.records, 0);
    expect(records, `filePages: ${JSON.stringify(stored)}`).toBeLessThanOrEqual(2 * (KEPT + CHURN_FILES) + 2 * 1000);
    expect(stored.some((entry) => entry.kind === 'snapshot'), `filePages: ${JSON.stringify(stored)}`).toBe(true);

    await page.reload();
    await page.getByTestId('file-table').waitFor();
    await openFolder(page, '');
    expect(await fileRowPaths(page)).toEqual(['churn', 'kept']);
    await openFolder(page, 'churn');
    expect(await fileRowPaths(page)).toEqual([`churn/round-${CHURN_ROUNDS - 1}`]);
    await page.waitForFunction(
      (expected) => document.querySelector('[data-testid="folder-row"][data-path="churn/round-4"] .cell-size')?.getAttribute('title') === expected,
      `${CHURN_FILES} files`,
    );
    await openFolder(page, 'kept');
    expect(await fileRowPaths(page)).toEqual(files.map((file) => file.path).sort());
    expect((await saveFileAndHash(page, 'kept/file-7.txt')).sha256).toBe(sha256(files[7].bytes));
  });
});

async function commitAll(api: ServerApi, ns: Parameters<ServerApi['commitBatch']>[0], requests: CommitRequest[]): Promise<number> {
  const result = await api.commitBatch(ns, requests);
  if ('need' in result) throw new Error(`the batch still needs ${result.need.length} block(s)`);
  return result.sjids[result.sjids.length - 1];
}

/** Waits until the page's worker has applied the journal up to `cursor` (the overall progress says so). */
async function waitForCursor(page: import('playwright-core').Page, cursor: number): Promise<void> {
  await page.waitForFunction(
    async ({ cursor }) => {
      const request = indexedDB.open('nearsync');
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      try {
        const records = await new Promise<Array<{ cursor: number }>>((resolve, reject) => {
          const all = db.transaction('workspaces').objectStore('workspaces').getAll();
          all.onsuccess = () => resolve(all.result as Array<{ cursor: number }>);
          all.onerror = () => reject(all.error);
        });
        return records.some((record) => record.cursor >= cursor);
      } finally {
        db.close();
      }
    },
    { cursor },
    { timeout: 60_000, polling: 200 },
  );
}

/** What the file table of `ns` is stored as: each value's key, kind and record count. */
async function storedFilePages(page: import('playwright-core').Page, ns: string): Promise<Array<{ key: IDBValidKey; kind: string; records: number }>> {
  return page.evaluate(async (ns) => {
    const request = indexedDB.open('nearsync');
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    try {
      const store = db.transaction('filePages').objectStore('filePages');
      const range = IDBKeyRange.bound([ns], [ns, []]);
      const read = <T,>(request: IDBRequest<T>) =>
        new Promise<T>((resolve, reject) => {
          request.onsuccess = () => resolve(request.result);
          request.onerror = () => reject(request.error);
        });
      const [keys, values] = await Promise.all([read(store.getAllKeys(range)), read(store.getAll(range))]);
      return values.map((value: { kind: string; files: unknown[]; removed: unknown[] }, i) => ({
        key: keys[i],
        kind: value.kind,
        records: value.files.length + value.removed.length,
      }));
    } finally {
      db.close();
    }
  }, ns);
}
