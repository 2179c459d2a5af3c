import { randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UPLOAD_BATCH_BYTES } from '../../src/engine/block-batches.ts';
import { ServerApi, type FetchLike } from '../../src/engine/server-api.ts';
import { uploadSmallFiles, type SmallFile } from '../../src/engine/small-file-batch.ts';
import { commitBatchWithBlocks } from '../../src/engine/uploader.ts';
import { parseFilePath, parseJournalPage, type CommitRequest, type NamespaceId } from '../../src/protocol/index.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { api, sha256, startHarness, type Harness } from './helpers.ts';

/**
 * The engine's block uploads through POST /api/v1/blocks/batch against a real server, and
 * its fallback to single PUTs against a server without that route (a loopback proxy in
 * front of the real one that answers 404 there, as a server from before batch uploads does).
 */

/** fetch, recording `METHOD path` of every request (the ServerApi under test is the real one). */
function recordingFetch(log: string[]): FetchLike {
  return (input, init) => {
    log.push(`${init?.method ?? 'GET'} ${new URL(input).pathname.replace(/[0-9a-f]{64}/, ':hash')}`);
    return fetch(input, init);
  };
}
const count = (log: string[], request: string) => log.filter((entry) => entry === request).length;

/** A proxy to `upstream` that has no batch upload route: 404 there, everything else forwarded. */
async function startOldServer(upstream: string): Promise<{ url: string; close(): Promise<void> }> {
  const target = new URL(upstream);
  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith('/api/v1/blocks/batch')) {
      req.resume();
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not_found', message: `no route for ${req.url}` }));
      return;
    }
    const forward = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function smallFiles(n: number, size: (i: number) => number, prefix: string): Array<SmallFile & { bytes: Uint8Array }> {
  return Array.from({ length: n }, (_, i) => {
    const bytes = new Uint8Array(randomBytes(size(i)));
    return { path: parseFilePath(`${prefix}/f-${i}.txt`), mtime: 1_700_000_000_000 + i, size: bytes.length, bytes, read: async () => bytes };
  });
}

describe('engine block uploads in batches', () => {
  let h: Harness;
  let ns: NamespaceId;
  let token: string;
  beforeAll(async () => {
    h = await startHarness();
    const created = await new ServerApi(h.url).createWorkspace('batch uploads');
    ns = created.namespaceId;
    token = created.token;
  });
  afterAll(async () => {
    await h.stop();
  });

  const journal = async () => {
    const entries = [];
    for (let cursor = 0, more = true; more; ) {
      const page = parseJournalPage((await api(h.url, 'GET', `/api/v1/ns/${ns}/journal?cursor=${cursor}&limit=1000`, { token })).body, cursor);
      entries.push(...page.entries);
      ({ cursor, more } = page);
    }
    return entries;
  };

  it('uploadSmallFiles sends the missing blocks in a few batch requests, reporting every file', async () => {
    const files = smallFiles(1000, (i) => 200 + ((i * 37) % 3000), 'batched');
    // One block the server has already, and two files with the same bytes.
    files[1] = { ...files[1], bytes: files[0].bytes, size: files[0].size, read: async () => files[0].bytes };
    const log: string[] = [];
    const writer = new ServerApi(h.url, token, recordingFetch(log));
    await writer.putBlock(hashOf(files[2].bytes), files[2].bytes);
    log.length = 0;
    const before = h.server.metrics();
    const uploaded = new Map<number, number>();
    const sjids = await uploadSmallFiles(files, {
      ns,
      api: writer,
      blocks: new MemoryBlockStore(),
      sha256: nodeSha256,
      onUploaded: (index, bytes) => uploaded.set(index, (uploaded.get(index) ?? 0) + bytes),
    });
    expect(sjids.every((sjid) => sjid !== null)).toBe(true);
    expect(uploaded.size).toBe(files.length);
    for (const [index, bytes] of uploaded) expect(bytes).toBe(files[index].size);

    const sent = files.reduce((n, file, i) => (i === 1 || i === 2 ? n : n + file.size), 0);
    const batches = count(log, 'POST /api/v1/blocks/batch');
    expect(batches).toBe(Math.ceil(sent / UPLOAD_BATCH_BYTES));
    expect(count(log, 'PUT /api/v1/blocks/:hash')).toBe(0);
    expect(count(log, 'POST /api/v1/ns/' + ns + '/commits')).toBe(1);
    const after = h.server.metrics();
    expect(after.blockBatchesReceived - before.blockBatchesReceived).toBe(batches);
    expect(after.blockBytesReceived - before.blockBytesReceived).toBe(sent);

    // What the journal names is on the server, byte-exact.
    const entries = (await journal()).filter((entry) => entry.path.startsWith('batched/'));
    expect(entries.length).toBe(files.length);
    for (const entry of entries.slice(0, 20)) {
      const got = await api(h.url, 'GET', `/api/v1/blocks/${entry.blocks[0]}?ns=${ns}`, { token });
      expect(sha256(got.body)).toBe(entry.blocks[0]);
    }
  });

  it('answers a 409 with the small needed blocks in batches and large ones as single PUTs', async () => {
    const store = new MemoryBlockStore();
    const small = Array.from({ length: 300 }, (_, i) => new Uint8Array(randomBytes(100 + i)));
    const large = new Uint8Array(randomBytes(2 * 1024 * 1024));
    const requests: CommitRequest[] = [];
    for (const [i, bytes] of [...small, large].entries()) {
      await store.putBlock(hashOf(bytes), bytes);
      requests.push({ path: parseFilePath(`need/f-${i}`), size: bytes.length, mtime: 1, blocks: [hashOf(bytes)], deleted: false });
    }
    const log: string[] = [];
    const sjids = await commitBatchWithBlocks(ns, requests, new ServerApi(h.url, token, recordingFetch(log)), store);
    expect(sjids.length).toBe(requests.length);
    expect(count(log, `POST /api/v1/ns/${ns}/commits`)).toBe(2);
    expect(count(log, 'POST /api/v1/blocks/batch')).toBe(1);
    expect(count(log, 'PUT /api/v1/blocks/:hash')).toBe(1);
  });

  it('falls back to single PUTs, for the rest of the session, against a server without batch uploads', async () => {
    const old = await startOldServer(h.url);
    try {
      const log: string[] = [];
      const writer = new ServerApi(old.url, token, recordingFetch(log));
      const uploaded: number[] = [];
      const options = { ns, api: writer, blocks: new MemoryBlockStore(), sha256: nodeSha256, onUploaded: (index: number) => uploaded.push(index) };
      const first = smallFiles(50, (i) => 100 + i, 'old-a');
      expect((await uploadSmallFiles(first, options)).every((sjid) => sjid !== null)).toBe(true);
      expect(count(log, 'POST /api/v1/blocks/batch')).toBeGreaterThanOrEqual(1);
      expect(count(log, 'PUT /api/v1/blocks/:hash')).toBe(50);
      expect(uploaded.sort((a, b) => a - b)).toEqual(first.map((_, i) => i));

      // The next batch does not ask again.
      log.length = 0;
      const second = smallFiles(30, (i) => 300 + i, 'old-b');
      expect((await uploadSmallFiles(second, options)).every((sjid) => sjid !== null)).toBe(true);
      expect(count(log, 'POST /api/v1/blocks/batch')).toBe(0);
      expect(count(log, 'PUT /api/v1/blocks/:hash')).toBe(30);
      const paths = new Set((await journal()).map((entry) => entry.path));
      for (const file of [...first, ...second]) expect(paths.has(file.path)).toBe(true);
    } finally {
      await old.close();
    }
  });
});
