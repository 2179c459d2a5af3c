import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NamespaceSync } from '../../src/engine/namespace-sync.ts';
import { ServerApi } from '../../src/engine/server-api.ts';
import { ServerBlockSource } from '../../src/engine/server-source.ts';
import { commitBatchWithBlocks } from '../../src/engine/uploader.ts';
import { MAX_COMMIT_BATCH, parseFilePath, type BlockHash, type CommitRequest } from '../../src/protocol/index.ts';
import { BACKEND_CASES } from '../support/backend-cases.ts';
import { MemoryBlockStore, MemoryStateStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';
import { api, startHarness, type Harness } from './helpers.ts';

/** A workspace of many small files, uploaded and synced through the batch routes by the engine. */

const FILES = 2000;

/** Requests the server answered, by route, from its Prometheus scrape. */
async function requestsByRoute(url: string): Promise<Map<string, number>> {
  const text = (await api(url, 'GET', '/metrics')).body.toString() as string;
  const counts = new Map<string, number>();
  for (const match of text.matchAll(/^nearsync_http_requests_total\{method="(\w+)",route="([^"]+)",status="\d+"\} (\d+)$/gm)) {
    const key = `${match[1]} ${match[2]}`;
    counts.set(key, (counts.get(key) ?? 0) + Number(match[3]));
  }
  return counts;
}

function difference(after: Map<string, number>, before: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [route, count] of after) if (count !== (before.get(route) ?? 0)) out[route] = count - (before.get(route) ?? 0);
  return out;
}

describe.each(BACKEND_CASES)('engine with batches on $name', (backendCase) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
  });
  afterAll(async () => {
    await h.stop();
  });

  it(`uploads and syncs ${FILES} small files in far fewer requests than files`, async () => {
    const created = await new ServerApi(h.url).createWorkspace('many files');
    const ns = created.namespaceId;
    const writer = new ServerApi(h.url, created.token);
    const writerBlocks = new MemoryBlockStore();
    const contents = new Map<string, Uint8Array>();
    const requests: CommitRequest[] = [];
    for (let i = 0; i < FILES; i++) {
      const bytes = new Uint8Array(randomBytes(100 + (i % 300)));
      const hash = hashOf(bytes);
      await writerBlocks.putBlock(hash, bytes);
      const path = parseFilePath(`dir${i % 20}/file-${i}.txt`);
      contents.set(path, bytes);
      requests.push({ path, size: bytes.length, mtime: 1_700_000_000_000 + i, blocks: [hash], deleted: false });
    }

    // Most blocks are on the server already (uploaded 16 at a time: each upload is fsynced, which
    // is what takes time here); each batch's first commit names the rest (409), then commits.
    const late = new Set(requests.filter((_, i) => i % 40 === 0).map((request) => request.blocks[0]));
    const early = requests.map((request) => request.blocks[0]).filter((hash) => !late.has(hash));
    await Promise.all(
      Array.from({ length: 16 }, async (_, worker) => {
        for (let i = worker; i < early.length; i += 16) await writer.putBlock(early[i], (await writerBlocks.getBlock(early[i]))!);
      }),
    );
    const beforeUpload = await requestsByRoute(h.url);
    const sjids: number[] = [];
    for (let i = 0; i < requests.length; i += MAX_COMMIT_BATCH) {
      sjids.push(...(await commitBatchWithBlocks(ns, requests.slice(i, i + MAX_COMMIT_BATCH), writer, writerBlocks)));
    }
    expect(sjids).toEqual(Array.from({ length: FILES }, (_, i) => i + 1));
    const upload = difference(await requestsByRoute(h.url), beforeUpload);
    expect(upload['POST /api/v1/ns/:ns/commits']).toBe(2 * Math.ceil(FILES / MAX_COMMIT_BATCH));
    expect(upload['POST /api/v1/ns/:ns/commit']).toBeUndefined();
    // The blocks each 409 names go up in one batch upload per commit batch, not one PUT each.
    expect(upload['PUT /api/v1/blocks/:hash']).toBeUndefined();
    expect(upload['POST /api/v1/blocks/batch']).toBe(Math.ceil(FILES / MAX_COMMIT_BATCH));

    // Sync on a second device.
    const joined = await new ServerApi(h.url).join(new URL(created.inviteUrl).hash.replace('#invite=', ''));
    const reader = new ServerApi(h.url, joined.token);
    const blocks = new MemoryBlockStore();
    const sync = new NamespaceSync({
      ns,
      journal: reader.journal(ns),
      state: new MemoryStateStore(),
      blocks,
      sha256: nodeSha256,
      sources: () => [new ServerBlockSource(reader)],
      longPollSeconds: 1,
      pageLimit: 1000,
    });
    const metricsBefore = h.server.metrics();
    const beforeSync = await requestsByRoute(h.url);
    await sync.start();
    try {
      await until(() => sync.snapshot().syncedCursor === FILES, 60_000, 'every file synced');
    } finally {
      await sync.stop();
    }
    for (const [path, bytes] of contents) {
      const file = sync.file(path)!;
      expect(hashOf((await blocks.getBlock(file.blocks[0] as BlockHash))!)).toBe(hashOf(bytes));
    }
    const synced = difference(await requestsByRoute(h.url), beforeSync);
    const total = Object.values(synced).reduce((n, count) => n + count, 0);
    // Journal pages of 1000 and long polls, plus batches of up to 256 blocks: a few dozen requests for 2000 files.
    expect(total, JSON.stringify(synced)).toBeLessThan(FILES / 20);
    expect(synced['GET /api/v1/blocks/:hash'] ?? 0).toBeLessThan(10);
    const metrics = h.server.metrics();
    expect(metrics.blockBatchesServed - metricsBefore.blockBatchesServed).toBe(synced['POST /api/v1/ns/:ns/blocks']);
    expect(metrics.blockRequestsServed - metricsBefore.blockRequestsServed).toBe(FILES);
    expect(blocks.puts).toBe(FILES);
  }, 180_000);
});
