import { randomBytes } from 'node:crypto';
import type { Page } from 'playwright-core';
import { ServerApi } from '../../src/engine/server-api.ts';
import { MAX_BLOCK_SIZE, parseFilePath, type BlockHash } from '../../src/protocol/index.ts';
import type { E2eHarness, TestServer } from '../e2e/harness.ts';
import { createWorkspace, joinWithLink, uploadThroughPicker, waitForRole } from '../e2e/ui.ts';
import { nodeSha256 } from '../support/memory-stores.ts';
import { median, type BenchRow } from './report.ts';
import { profileWorkers } from './worker-profiler.ts';

/**
 * Upload and download of one file through the app (UI → worker → server, and server →
 * worker → IndexedDB), each next to a plain `fetch` of the same bytes from the same page in
 * the same run: the plain fetch is the ceiling the app is measured against.
 */

const FETCH_PARALLEL = 4;

export async function benchAppTransfer(
  harness: E2eHarness,
  sizeMiB: number,
  repeats: number,
  profilePrefix?: string,
  log: (line: string) => void = () => {},
): Promise<BenchRow[]> {
  const server = await harness.startServer();
  const bytes = sizeMiB * 1024 * 1024;
  const upload = { app: [] as number[], fetch: [] as number[], kept: [] as number[] };
  const download = { app: [] as number[], fetch: [] as number[] };

  for (let round = 0; round < repeats; round++) {
    // Fresh bytes every round: the server deduplicates blocks it has already seen.
    const uploadPath = await harness.writeTempFile(`upload-${round}.bin`, randomBytes(bytes));
    const baselinePath = await harness.writeTempFile(`baseline-${round}.bin`, randomBytes(bytes));
    const { page, token } = await openFreshWorkspace(harness, server, `bench upload ${round}`);
    upload.fetch.push(await timePlainUpload(page, server, token, baselinePath));
    const profiler = profilePrefix ? await profileWorkers(harness.browser) : null;
    const timed = await timeAppUpload(page, uploadPath);
    if (profiler) {
      for (const { file, top } of await profiler.stop(`${profilePrefix}-upload-${round}`)) {
        log(`${file}: ${top.slice(0, 12).map(({ fn, selfMs }) => `${fn} ${selfMs.toFixed(0)} ms`).join(', ')}`);
      }
    }
    upload.app.push(timed.done);
    upload.kept.push(timed.kept);
    await page.context().close();

    download.app.push(await timeAppDownload(harness, server, bytes, round));
    download.fetch.push(await timePlainDownload(harness, server, bytes));
  }

  const row = (scenario: string, app: number[], plain: number[]): BenchRow => {
    const appSeconds = median(app);
    const fetchSeconds = median(plain);
    return {
      scenario,
      bytes,
      repeats,
      app_seconds: appSeconds,
      app_mbps: bytes / appSeconds / 1e6,
      fetch_seconds: fetchSeconds,
      fetch_mbps: bytes / fetchSeconds / 1e6,
      app_to_fetch_ratio: fetchSeconds / appSeconds,
    };
  };
  return [
    // kept: until the local copy is stored too (the file's row reads synced), which the upload no longer waits for.
    { ...row('app-upload', upload.app, upload.fetch), app_kept_seconds: median(upload.kept) },
    row('app-download', download.app, download.fetch),
  ];
}

async function openFreshWorkspace(harness: E2eHarness, server: TestServer, name: string) {
  const context = await harness.newBrowser();
  const page = await context.newPage();
  const { namespaceId, shareLink } = await createWorkspace(page, server.origin, name);
  await waitForRole(page, 'leader');
  // A second member token for the plain-fetch baseline (the app keeps its own in the worker).
  const invite = new URL(shareLink).hash.replace('#invite=', '');
  const { token } = await new ServerApi(server.origin).join(invite);
  return { page, namespaceId, token };
}

/**
 * Seconds from picking the file to the app reporting it committed (`done`), and to its local
 * copy being stored as well (the file's row reads synced). Timed in the page, as the plain
 * fetch is: from the file input's change event (a capture listener, so before the app's own)
 * to the DOM attribute changing (a MutationObserver), so neither Playwright's round trips to
 * set the file nor its polling for the row count against the app.
 */
async function timeAppUpload(page: Page, filePath: string): Promise<{ done: number; kept: number }> {
  const name = filePath.split('/').pop()!;
  await page.evaluate((path) => {
    const marks: { picked?: number; done?: number; kept?: number } = {};
    (window as unknown as { __benchUpload: typeof marks }).__benchUpload = marks;
    const input = document.querySelector('[data-testid="file-input"]')!;
    input.addEventListener('change', () => (marks.picked ??= performance.now()), { capture: true, once: true });
    const observer = new MutationObserver(() => {
      const now = performance.now();
      const upload = document.querySelector(`[data-testid="upload-row"][data-path="${path}"]`);
      if (marks.done === undefined && upload?.getAttribute('data-state') === 'done') marks.done = now;
      const file = document.querySelector(`[data-testid="file-row"][data-path="${path}"]`);
      if (marks.kept === undefined && file?.getAttribute('data-status') === 'synced') marks.kept = now;
      if (marks.done !== undefined && marks.kept !== undefined) observer.disconnect();
    });
    observer.observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state', 'data-status'] });
  }, name);
  await uploadThroughPicker(page, [filePath]);
  const marks = await page.waitForFunction(
    () => {
      const marks = (window as unknown as { __benchUpload: { picked?: number; done?: number; kept?: number } }).__benchUpload;
      return marks.picked !== undefined && marks.done !== undefined && marks.kept !== undefined ? marks : null;
    },
    undefined,
    { polling: 100, timeout: 300_000 },
  );
  const { picked, done, kept } = (await marks.jsonValue()) as { picked: number; done: number; kept: number };
  return { done: (done - picked) / 1000, kept: (kept - picked) / 1000 };
}

/** Seconds for the page to PUT a same-sized file's 4 MiB slices with fetch, no hashing. */
async function timePlainUpload(page: Page, server: TestServer, token: string, filePath: string): Promise<number> {
  const hashes = await hashesOfFile(filePath);
  await page.evaluate(() => {
    const input = document.createElement('input');
    input.type = 'file';
    input.id = 'bench-baseline-input';
    input.hidden = true;
    document.body.append(input);
  });
  await page.setInputFiles('#bench-baseline-input', filePath);
  return page.evaluate(
    async ({ origin, token, hashes, blockSize, parallel }) => {
      const input = document.getElementById('bench-baseline-input') as HTMLInputElement;
      const file = input.files![0];
      const started = performance.now();
      let next = 0;
      // No named functions in here: tsx would wrap them in a helper the page does not have.
      await Promise.all(Array.from({ length: parallel }, async () => {
        while (next < hashes.length) {
          const index = next++;
          // A Blob slice is the fastest body Chromium uploads (an ArrayBuffer is far slower).
          const body = file.slice(index * blockSize, (index + 1) * blockSize);
          const response = await fetch(`${origin}/api/v1/blocks/${hashes[index]}`, {
            method: 'PUT',
            body,
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
          });
          if (!response.ok) throw new Error(`PUT answered ${response.status}`);
        }
      }));
      input.remove();
      return (performance.now() - started) / 1000;
    },
    { origin: server.origin, token, hashes, blockSize: MAX_BLOCK_SIZE, parallel: FETCH_PARALLEL },
  );
}

/**
 * Seconds from a commit landing on the server to the joined page showing the file synced:
 * long-poll wake-up, block fetches, hashing and IndexedDB writes. The blocks are uploaded
 * from Node beforehand, so only the browser's side is timed.
 */
async function timeAppDownload(harness: E2eHarness, server: TestServer, bytes: number, round: number): Promise<number> {
  const writer = await new ServerApi(server.origin).createWorkspace(`bench download ${round}`);
  const context = await harness.newBrowser();
  const page = await context.newPage();
  await joinWithLink(page, writer.inviteUrl, writer.namespaceId);
  await waitForRole(page, 'leader');
  const api = new ServerApi(server.origin, writer.token);
  const hashes = await putBlocksFromNode(api, randomBytes(bytes));
  const path = `download-${round}.bin`;
  const started = performance.now();
  await api.commit(writer.namespaceId, { path: parseFilePath(path), size: bytes, mtime: Date.now(), blocks: hashes, deleted: false });
  await page.waitForFunction(
    (p) => document.querySelector(`[data-testid="file-row"][data-path="${p}"]`)?.getAttribute('data-status') === 'synced',
    path,
    { polling: 'raf', timeout: 300_000 },
  );
  const seconds = (performance.now() - started) / 1000;
  await context.close();
  return seconds;
}

/** Seconds for a page of the same origin to GET the same number of blocks with fetch. */
async function timePlainDownload(harness: E2eHarness, server: TestServer, bytes: number): Promise<number> {
  const writer = await new ServerApi(server.origin).createWorkspace('bench plain download');
  const api = new ServerApi(server.origin, writer.token);
  const hashes = await putBlocksFromNode(api, randomBytes(bytes));
  await api.commit(writer.namespaceId, { path: parseFilePath('plain.bin'), size: bytes, mtime: 1, blocks: hashes, deleted: false });
  const context = await harness.newBrowser();
  const page = await context.newPage();
  await page.goto(`${server.origin}/`);
  const seconds = await page.evaluate(
    async ({ origin, ns, token, hashes, parallel }) => {
      const started = performance.now();
      let next = 0;
      await Promise.all(Array.from({ length: parallel }, async () => {
        while (next < hashes.length) {
          const hash = hashes[next++];
          const response = await fetch(`${origin}/api/v1/blocks/${hash}?ns=${ns}`, { headers: { authorization: `Bearer ${token}` } });
          if (!response.ok) throw new Error(`GET answered ${response.status}`);
          await response.arrayBuffer();
        }
      }));
      return (performance.now() - started) / 1000;
    },
    { origin: server.origin, ns: writer.namespaceId, token: writer.token, hashes, parallel: FETCH_PARALLEL },
  );
  await context.close();
  return seconds;
}

async function putBlocksFromNode(api: ServerApi, data: Uint8Array): Promise<BlockHash[]> {
  const hashes: BlockHash[] = [];
  for (let offset = 0; offset < data.length; offset += MAX_BLOCK_SIZE) {
    const block = data.subarray(offset, offset + MAX_BLOCK_SIZE);
    const hash = await nodeSha256(block);
    hashes.push(hash);
    await api.putBlock(hash, block);
  }
  return hashes;
}

async function hashesOfFile(filePath: string): Promise<BlockHash[]> {
  const { readFile } = await import('node:fs/promises');
  const data = await readFile(filePath);
  const hashes: BlockHash[] = [];
  for (let offset = 0; offset < data.length; offset += MAX_BLOCK_SIZE) {
    hashes.push(await nodeSha256(data.subarray(offset, offset + MAX_BLOCK_SIZE)));
  }
  return hashes;
}
