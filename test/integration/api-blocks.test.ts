import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCK_SIZE, MAX_MISSING_QUERY } from '../../src/protocol/index.ts';
import {
  api,
  commitFile,
  createWorkspace,
  makeBlock,
  putBlock,
  rawRequest,
  startHarness,
  storedState,
  until,
  type Harness,
  type Member,
  type TestBlock,
} from './helpers.ts';
import { BACKEND_CASES } from '../support/backend-cases.ts';

describe.each(BACKEND_CASES)('blocks API on $name', (backendCase) => {
  let h: Harness;
  let a: Member;
  let b: Member;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
    a = await createWorkspace(h.url, 'A');
    b = await createWorkspace(h.url, 'B');
  });
  afterAll(async () => {
    await h.stop();
  });

  const put = (token: string | undefined, hash: string, body?: Uint8Array | string, headers: Record<string, string> = {}) =>
    api(h.url, 'PUT', `/api/v1/blocks/${hash}`, { token, body, headers });
  const get = (token: string | undefined, hash: string, ns: string | null, headers: Record<string, string> = {}) =>
    api(h.url, 'GET', `/api/v1/blocks/${hash}${ns === null ? '' : `?ns=${ns}`}`, { token, headers });

  /** A chunked upload (no Content-Length) through node:http. */
  function putChunked(token: string, hash: string, chunks: Buffer[]): Promise<{ status: number; body: any }> {
    const url = new URL(h.url);
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        { host: url.hostname, port: url.port, method: 'PUT', path: `/api/v1/blocks/${hash}`, headers: { authorization: `Bearer ${token}` } },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(parts).toString()) }));
        },
      );
      req.on('error', reject);
      const source = Readable.from(chunks);
      source.pipe(req);
    });
  }

  /** Sends the first MiB of `bytes` as an upload's body, then drops the connection; resolves once nothing of it is left. */
  async function abortMidBody(method: 'PUT' | 'POST', path: string, bytes: Uint8Array): Promise<void> {
    const url = new URL(h.url);
    const req = httpRequest({
      host: url.hostname,
      port: url.port,
      method,
      path,
      headers: { authorization: `Bearer ${a.token}`, 'content-length': bytes.length },
    });
    req.on('error', () => {});
    await new Promise<void>((resolve) => req.write(bytes.subarray(0, 1024 * 1024), () => resolve()));
    // Block files show an upload under way as a temp file; S3 uploads wait in memory until verified.
    if (h.backendCase.blocks === 'files') await until(async () => (await storedState(h)).partial.length === 1, 5000, 'the upload to start');
    req.socket!.destroy();
    await until(async () => (await storedState(h)).partial.length === 0, 5000, 'the partial upload to go');
  }

  describe('block upload', () => {
    it('answers 201 for a new block and 200 for a known one', async () => {
      const block = makeBlock(10_000);
      const first = await put(a.token, block.hash, block.bytes);
      expect(first.status).toBe(201);
      expect(first.body).toEqual({ hash: block.hash, size: 10_000 });
      const again = await put(b.token, block.hash, block.bytes);
      expect(again.status).toBe(200);
      expect((await storedState(h)).blocks).toContain(block.hash);
    });

    it('accepts exactly MAX_BLOCK_SIZE bytes, also without Content-Length', async () => {
      const big = makeBlock(MAX_BLOCK_SIZE);
      expect((await put(a.token, big.hash, big.bytes)).status).toBe(201);
      const chunked = makeBlock(MAX_BLOCK_SIZE);
      const parts = Array.from({ length: 64 }, (_, i) => chunked.bytes.subarray(i * 65536, (i + 1) * 65536));
      expect((await putChunked(a.token, chunked.hash, parts)).status).toBe(201);
    });

    it('rejects a body whose SHA-256 differs with 400 hash_mismatch, keeping nothing', async () => {
      const block = makeBlock(5000);
      const other = makeBlock(5000);
      const before = await storedState(h);
      const res = await put(a.token, block.hash, other.bytes);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('hash_mismatch');
      // Even for a block the server already has.
      await putBlock(h.url, a.token, other);
      const known = await put(a.token, other.hash, block.bytes);
      expect(known.status).toBe(400);
      expect(known.body.error).toBe('hash_mismatch');
      const after = await storedState(h);
      expect(after.blocks).toEqual([...before.blocks, other.hash].sort());
      expect(after.partial).toEqual([]);
    });

    it('answers 413 too_large over MAX_BLOCK_SIZE, by Content-Length and by counting', async () => {
      const before = await storedState(h);
      const over = makeBlock(MAX_BLOCK_SIZE + 1);
      const declared = await put(a.token, over.hash, over.bytes);
      expect(declared.status).toBe(413);
      expect(declared.body.error).toBe('too_large');
      const parts = Array.from({ length: 65 }, (_, i) => over.bytes.subarray(i * 65536, (i + 1) * 65536));
      const counted = await putChunked(a.token, over.hash, parts);
      expect(counted.status).toBe(413);
      expect(counted.body.error).toBe('too_large');
      await until(async () => (await storedState(h)).partial.length === 0);
      expect(await storedState(h)).toEqual(before);
      expect((await api(h.url, 'GET', '/api/v1/health')).status).toBe(200);
    });

    it('answers 400 for an empty body and for a malformed hash', async () => {
      const before = await storedState(h);
      const emptyHash = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
      const empty = await put(a.token, emptyHash, new Uint8Array(0));
      expect(empty.status).toBe(400);
      expect(empty.body.error).toBe('empty');
      const chunkedEmpty = await putChunked(a.token, emptyHash, []);
      expect(chunkedEmpty.status).toBe(400);
      expect(chunkedEmpty.body.error).toBe('empty');
      for (const hash of ['abc', 'A'.repeat(64), 'g'.repeat(64), 'a'.repeat(65)]) {
        const res = await put(a.token, hash, 'x');
        expect(res.status, hash).toBe(400);
        expect(res.body.error).toBe('invalid');
      }
      expect(await storedState(h)).toEqual(before);
    });

    it('needs a valid token', async () => {
      const block = makeBlock(10);
      expect((await put(undefined, block.hash, block.bytes)).status).toBe(401);
      expect((await put('x'.repeat(43), block.hash, block.bytes)).status).toBe(401);
      expect((await api(h.url, 'POST', '/api/v1/blocks/missing', { json: { hashes: [block.hash] } })).status).toBe(401);
    });

    it('leaves no block and no temp file when the client aborts mid-body', async () => {
      const block = makeBlock(MAX_BLOCK_SIZE);
      const before = await storedState(h);
      await abortMidBody('PUT', `/api/v1/blocks/${block.hash}`, block.bytes);
      expect(await storedState(h)).toEqual(before);
      const missing = await api(h.url, 'POST', '/api/v1/blocks/missing', { token: a.token, json: { hashes: [block.hash] } });
      expect(missing.body.missing).toEqual([block.hash]);
      // The same block uploads fine afterwards.
      expect(await putBlock(h.url, a.token, block)).toBe(201);
    });
  });

  describe('unnamed block upload', () => {
    const post = (token: string | undefined, body?: Uint8Array) => api(h.url, 'POST', '/api/v1/blocks', { token, body });

    it('names a block by its SHA-256: 201 when new, 200 when known, and the name is committable', async () => {
      const block = makeBlock(MAX_BLOCK_SIZE);
      const first = await post(a.token, block.bytes);
      expect(first.status).toBe(201);
      expect(first.body).toEqual({ hash: block.hash, size: MAX_BLOCK_SIZE });
      expect((await post(b.token, block.bytes)).status).toBe(200);
      // Also a block uploaded earlier by name.
      const named = makeBlock(3000);
      await putBlock(h.url, a.token, named);
      expect(await post(a.token, named.bytes)).toMatchObject({ status: 200, body: { hash: named.hash, size: 3000 } });
      expect((await storedState(h)).blocks).toEqual(expect.arrayContaining([block.hash, named.hash]));
      // Committed under the name the server gave, with no upload by name.
      const commit = await api(h.url, 'POST', `/api/v1/ns/${a.ns}/commit`, {
        token: a.token,
        json: { path: 'unnamed.bin', size: MAX_BLOCK_SIZE, mtime: 1_700_000_000_000, blocks: [first.body.hash] },
      });
      expect(commit.status).toBe(200);
      const served = await get(a.token, block.hash, a.ns);
      expect(served.status).toBe(200);
      expect(Buffer.compare(served.body, block.bytes)).toBe(0);
    });

    it('leaves no block and no temp file when the client aborts mid-body', async () => {
      const block = makeBlock(MAX_BLOCK_SIZE);
      const before = await storedState(h);
      await abortMidBody('POST', '/api/v1/blocks', block.bytes);
      expect(await storedState(h)).toEqual(before);
      expect(await post(a.token, block.bytes)).toMatchObject({ status: 201, body: { hash: block.hash } });
    });

    it('refuses an empty body, one over MAX_BLOCK_SIZE and a missing token, keeping nothing', async () => {
      const before = await storedState(h);
      expect(await post(a.token, new Uint8Array(0))).toMatchObject({ status: 400, body: { error: 'empty' } });
      expect(await post(a.token, makeBlock(MAX_BLOCK_SIZE + 1).bytes)).toMatchObject({ status: 413, body: { error: 'too_large' } });
      expect((await post(undefined, makeBlock(10).bytes)).status).toBe(401);
      await until(async () => (await storedState(h)).partial.length === 0);
      expect(await storedState(h)).toEqual(before);
    });
  });

  describe('missing blocks query', () => {
    it('lists the hashes not stored, in order, without repeats', async () => {
      const [x, y, z] = [makeBlock(11), makeBlock(12), makeBlock(13)];
      await putBlock(h.url, b.token, y);
      const res = await api(h.url, 'POST', '/api/v1/blocks/missing', { token: a.token, json: { hashes: [z.hash, y.hash, x.hash, z.hash] } });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ missing: [z.hash, x.hash] });
      expect((await api(h.url, 'POST', '/api/v1/blocks/missing', { token: a.token, json: { hashes: [] } })).body).toEqual({ missing: [] });
    });

    it.each([
      [{ hashes: ['nope'] }],
      [{ hashes: 'a'.repeat(64) }],
      [{}],
      [{ hashes: [], more: 1 }],
      [{ hashes: Array(MAX_MISSING_QUERY + 1).fill('a'.repeat(64)) }],
    ])('rejects %j with 400', async (json) => {
      const res = await api(h.url, 'POST', '/api/v1/blocks/missing', { token: a.token, json });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid');
    });
  });

  describe('block download', () => {
    let onlyA: TestBlock;
    beforeAll(async () => {
      onlyA = makeBlock(300_000);
      await commitFile(h.url, a, 'only-a.bin', [onlyA]);
    });

    it('serves the bytes to a member of a namespace that references the block', async () => {
      const res = await get(a.token, onlyA.hash, a.ns);
      expect(res.status).toBe(200);
      expect(Buffer.compare(res.body, onlyA.bytes)).toBe(0);
      expect(res.headers.get('content-type')).toBe('application/octet-stream');
      expect(res.headers.get('content-length')).toBe(String(onlyA.bytes.length));
      expect(res.headers.get('cache-control')).toBe('private, max-age=31536000, immutable');
      expect(res.headers.get('etag')).toBe(`"${onlyA.hash}"`);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    });

    it('answers 304 for a matching If-None-Match', async () => {
      const res = await get(a.token, onlyA.hash, a.ns, { 'if-none-match': `"${onlyA.hash}"` });
      expect(res.status).toBe(304);
    });

    it('answers 404 for an unknown block', async () => {
      const res = await get(a.token, 'f'.repeat(64), a.ns);
      expect(res.status).toBe(404);
      expect(res.body.error).toBe('not_found');
    });

    it('answers 403 across namespaces', async () => {
      const otherNs = await get(b.token, onlyA.hash, a.ns);
      expect(otherNs.status).toBe(403);
      expect(otherNs.body.error).toBe('forbidden');
      const unreferenced = await get(b.token, onlyA.hash, b.ns);
      expect(unreferenced.status).toBe(403);
      expect(unreferenced.body.error).toBe('forbidden');
      // An uploaded but never committed block is not readable either.
      const loose = makeBlock(50);
      await putBlock(h.url, a.token, loose);
      expect((await get(a.token, loose.hash, a.ns)).status).toBe(403);
    });

    it('serves a shared block to a second namespace once its journal references it', async () => {
      expect((await get(b.token, onlyA.hash, b.ns)).status).toBe(403);
      await commitFile(h.url, b, 'copy.bin', [onlyA]);
      const res = await get(b.token, onlyA.hash, b.ns);
      expect(res.status).toBe(200);
      expect(Buffer.compare(res.body, onlyA.bytes)).toBe(0);
      // Deleting the file does not withdraw access to versions already in the journal.
      await api(h.url, 'POST', `/api/v1/ns/${b.ns}/commit`, { token: b.token, json: { path: 'copy.bin', size: 0, mtime: 0, blocks: [], deleted: true } });
      expect((await get(b.token, onlyA.hash, b.ns)).status).toBe(200);
    });

    it('answers 400 without ns or with a bad one, 401 without a valid token', async () => {
      const noNs = await get(a.token, onlyA.hash, null);
      expect(noNs.status).toBe(400);
      expect(noNs.body.error).toBe('invalid');
      expect((await get(a.token, onlyA.hash, 'short')).status).toBe(400);
      expect((await get(a.token, 'xyz', a.ns)).status).toBe(400);
      expect((await get(undefined, onlyA.hash, a.ns)).status).toBe(401);
      expect((await get('garbage', onlyA.hash, a.ns)).status).toBe(401);
      expect((await get('Z'.repeat(43), onlyA.hash, a.ns)).status).toBe(401);
    });
  });

  describe('metrics', () => {
    it('counts block bytes served and received, and whole responses served', async () => {
      const m = await createWorkspace(h.url);
      const block = makeBlock(123_456);
      const start = (await api(h.url, 'GET', '/api/v1/metrics')).body;
      expect(Object.keys(start).sort()).toEqual([
        'advertsRelayed',
        'blockBatchesReceived',
        'blockBatchesServed',
        'blockBytesCollected',
        'blockBytesReceived',
        'blockBytesServed',
        'blockGcPasses',
        'blockRequestsServed',
        'blocksCollected',
        'commitBatches',
        'commits',
        'journalLongPollsOpen',
        'relaySockets',
        'signalsRelayed',
      ]);

      await commitFile(h.url, m, 'm.bin', [block]);
      await put(m.token, block.hash, block.bytes); // known: 200, counted too
      await put(m.token, block.hash, makeBlock(10).bytes); // mismatch: not counted
      for (let i = 0; i < 3; i++) expect((await get(m.token, block.hash, m.ns)).status).toBe(200);
      await get(m.token, block.hash, m.ns, { 'if-none-match': `"${block.hash}"` }); // 304: no bytes
      await get(m.token, 'f'.repeat(64), m.ns); // 404

      await until(() => h.server.metrics().blockRequestsServed === start.blockRequestsServed + 3);
      const end = (await api(h.url, 'GET', '/api/v1/metrics')).body;
      expect(end.blockBytesReceived - start.blockBytesReceived).toBe(2 * 123_456);
      expect(end.blockBytesServed - start.blockBytesServed).toBe(3 * 123_456);
      expect(end.blockRequestsServed - start.blockRequestsServed).toBe(3);
      expect(end.commits - start.commits).toBe(1);
      expect(end.journalLongPollsOpen).toBe(0);
    });
  });

  describe('egress limit', () => {
    let slow: Harness;
    let m: Member;
    let block: TestBlock;
    beforeAll(async () => {
      slow = await startHarness({ backends: backendCase, egressBytesPerSecond: 1_000_000 });
      m = await createWorkspace(slow.url);
      block = makeBlock(1_500_000);
      await commitFile(slow.url, m, 'slow.bin', [block]);
    });
    afterAll(async () => {
      await slow.stop();
    });

    it('paces block downloads to the configured rate', async () => {
      const started = Date.now();
      const res = await api(slow.url, 'GET', `/api/v1/blocks/${block.hash}?ns=${m.ns}`, { token: m.token });
      const elapsed = Date.now() - started;
      expect(Buffer.compare(res.body, block.bytes)).toBe(0);
      expect(elapsed).toBeGreaterThanOrEqual(1300);
      expect(elapsed).toBeLessThan(4000);
    });

    it('shares the rate across concurrent downloads', async () => {
      const started = Date.now();
      const both = await Promise.all([0, 1].map(() => api(slow.url, 'GET', `/api/v1/blocks/${block.hash}?ns=${m.ns}`, { token: m.token })));
      for (const res of both) expect(res.body.length).toBe(block.bytes.length);
      expect(Date.now() - started).toBeGreaterThanOrEqual(2800);
    });

    it('counts only bytes written, and no served request, when the client aborts mid-block', async () => {
      const before = slow.server.metrics();
      const abort = new AbortController();
      const res = await fetch(`${slow.url}/api/v1/blocks/${block.hash}?ns=${m.ns}`, {
        headers: { authorization: `Bearer ${m.token}` },
        signal: abort.signal,
      });
      const reader = res.body!.getReader();
      let received = 0;
      while (received < 200_000) received += (await reader.read()).value!.length;
      abort.abort();
      await new Promise((r) => setTimeout(r, 500));
      const after = slow.server.metrics();
      expect(after.blockRequestsServed).toBe(before.blockRequestsServed);
      const served = after.blockBytesServed - before.blockBytesServed;
      expect(served).toBeGreaterThanOrEqual(received);
      expect(served).toBeLessThan(block.bytes.length);
    });
  });

  describe('request targets', () => {
    it('refuses a hash smuggled with percent-encoding', async () => {
      const res = await rawRequest(h.url, 'GET', `/api/v1/blocks/%61${'a'.repeat(63)}?ns=${a.ns}`, { authorization: `Bearer ${a.token}` });
      expect(res.status).toBe(400);
    });
  });
});
