import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCK_BATCH_BYTES, MAX_BLOCK_SIZE, parseJournalPage, type BlockHash } from '../../src/protocol/index.ts';
import { BACKEND_CASES } from '../support/backend-cases.ts';
import { api, commitFile, createWorkspace, head, makeBlock, putBlock, sha256, startHarness, storedState, until, type Harness, type Member, type TestBlock } from './helpers.ts';

/** The batch routes, POST /api/v1/ns/:ns/commits and POST /api/v1/ns/:ns/blocks, on every back end. */

const ABSENT = 0xffff_ffff;

/** Splits a record stream by hand (independently of the client's reader). */
function records(body: Buffer): Array<{ hash: string; bytes: Buffer | null }> {
  const out: Array<{ hash: string; bytes: Buffer | null }> = [];
  let offset = 0;
  while (offset < body.length) {
    if (offset + 36 > body.length) throw new Error(`truncated header at ${offset}`);
    const hash = body.toString('hex', offset, offset + 32);
    const length = body.readUInt32BE(offset + 32);
    offset += 36;
    if (length === ABSENT) {
      out.push({ hash, bytes: null });
      continue;
    }
    if (offset + length > body.length) throw new Error(`truncated block at ${offset}`);
    out.push({ hash, bytes: body.subarray(offset, offset + length) });
    offset += length;
  }
  return out;
}

const file = (path: string, blocks: TestBlock[], mtime = 1_700_000_000_000) => ({
  path,
  size: blocks.reduce((n, b) => n + b.bytes.length, 0),
  mtime,
  blocks: blocks.map((b) => b.hash),
});
const removal = (path: string) => ({ path, size: 0, mtime: 1_700_000_000_001, blocks: [], deleted: true });

describe.each(BACKEND_CASES)('batch API on $name', (backendCase) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
  });
  afterAll(async () => {
    await h.stop();
  });

  const commits = (m: Member, json: unknown, token = m.token) => api(h.url, 'POST', `/api/v1/ns/${m.ns}/commits`, { token, json });
  const fetchBlocks = (m: Member, json: unknown, token = m.token) => api(h.url, 'POST', `/api/v1/ns/${m.ns}/blocks`, { token, json });
  const journal = async (m: Member) =>
    parseJournalPage((await api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=0&limit=1000`, { token: m.token })).body, 0).entries;

  describe('batch commit', () => {
    it('appends every element in order with consecutive sjids, visible to a waiting long poll at once', async () => {
      const m = await createWorkspace(h.url);
      await commitFile(h.url, m, 'before', [makeBlock(5)]);
      const blocks = [makeBlock(100), makeBlock(200), makeBlock(300)];
      for (const block of blocks) await putBlock(h.url, m.token, block);
      const poll = api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=1&wait=20`, { token: m.token });
      await until(() => h.server.metrics().journalLongPollsOpen > 0);
      const metrics = h.server.metrics();
      const batch = [file('a', [blocks[0]]), file('b', [blocks[1], blocks[2]]), file('a', [blocks[2]]), file('empty', [])];
      const res = await commits(m, { commits: batch });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ sjids: [2, 3, 4, 5] });
      // The long poll woke with the whole batch, not a part of it.
      expect((await poll).body.entries.map((e: { sjid: number }) => e.sjid)).toEqual([2, 3, 4, 5]);
      expect((await journal(m)).slice(1)).toEqual(batch.map((c, i) => ({ sjid: i + 2, ...c, deleted: false })));
      expect(h.server.metrics().commits).toBe(metrics.commits + 4);
      expect(h.server.metrics().commitBatches).toBe(metrics.commitBatches + 1);
    });

    it('answers need_blocks listing every missing block of every file once, in order, and commits nothing', async () => {
      const m = await createWorkspace(h.url);
      const [x, y, z, have] = [makeBlock(10), makeBlock(20), makeBlock(30), makeBlock(40)];
      await putBlock(h.url, m.token, have);
      const batch = [file('one', [y, have, x]), file('two', [x, z]), file('three', [have]), file('four', [z, y])];
      const before = await storedState(h);
      const res = await commits(m, { commits: batch });
      expect(res.status).toBe(409);
      expect(res.body).toEqual({ error: 'need_blocks', message: expect.any(String), need: [y.hash, x.hash, z.hash] });
      expect(await storedState(h)).toEqual(before);
      for (const block of [x, y, z]) await putBlock(h.url, m.token, block);
      expect((await commits(m, { commits: batch })).body).toEqual({ sjids: [1, 2, 3, 4] });
    });

    it('answers size_mismatch naming the element, and commits nothing', async () => {
      const m = await createWorkspace(h.url);
      const block = makeBlock(50);
      await putBlock(h.url, m.token, block);
      const before = await storedState(h);
      const res = await commits(m, { commits: [file('ok', [block]), { ...file('bad', [block]), size: 51 }] });
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'size_mismatch', message: expect.stringContaining('commits[1]'), index: 1 });
      expect(await storedState(h)).toEqual(before);
      expect(await head(h.url, m)).toBe(0);
    });

    it('judges each deletion after the elements before it: write then delete works, a second delete is not_live', async () => {
      const m = await createWorkspace(h.url);
      const block = makeBlock(60);
      await commitFile(h.url, m, 'live', [block]);
      const ok = await commits(m, { commits: [file('new', [block]), removal('new'), removal('live'), file('live', [block])] });
      expect(ok.body).toEqual({ sjids: [2, 3, 4, 5] });
      expect((await journal(m)).map((e) => [e.path, e.deleted])).toEqual([
        ['live', false],
        ['new', false],
        ['new', true],
        ['live', true],
        ['live', false],
      ]);

      const before = await storedState(h);
      for (const [batch, index] of [
        [[file('x', [block]), removal('live'), removal('live')], 2],
        [[removal('new')], 0],
        [[removal('never'), file('never', [block])], 0],
      ] as const) {
        const res = await commits(m, { commits: batch });
        expect(res.status).toBe(409);
        expect(res.body).toEqual({ error: 'not_live', message: expect.any(String), index });
      }
      expect(await storedState(h)).toEqual(before);
      expect(await head(h.url, m)).toBe(5);
    });

    it('keeps sjids gapless, and each batch consecutive, under 20 concurrent batches', async () => {
      const m = await createWorkspace(h.url);
      const block = makeBlock(64);
      await putBlock(h.url, m.token, block);
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, b) => commits(m, { commits: Array.from({ length: 10 }, (_, i) => file(`b${b}/f${i}`, [block])) })),
      );
      const all: number[] = [];
      for (const res of results) {
        expect(res.status).toBe(200);
        const sjids = res.body.sjids as number[];
        expect(sjids).toEqual(Array.from({ length: 10 }, (_, i) => sjids[0] + i));
        all.push(...sjids);
      }
      expect(all.sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      const byPath = new Map((await journal(m)).map((e) => [e.path as string, e.sjid]));
      results.forEach((res, b) => res.body.sjids.forEach((sjid: number, i: number) => expect(byPath.get(`b${b}/f${i}`)).toBe(sjid)));
    });

    const good = { path: 'a', size: 0, mtime: 0, blocks: [] };
    const bad: Array<[string, unknown, string]> = [
      ['not an object', [good], 'body'],
      ['commits not an array', { commits: good }, 'commits'],
      ['no commits', { commits: [] }, 'commits'],
      ['1001 commits', { commits: Array(1001).fill(good) }, 'commits'],
      ['unknown body field', { commits: [good], atomic: true }, 'body.atomic'],
      ['bad path in element 3', { commits: [good, good, good, { ...good, path: '../x' }] }, 'commits[3].path'],
      ['bad hash', { commits: [good, { path: 'b', size: 1, mtime: 0, blocks: ['nope'] }] }, 'commits[1].blocks[0]'],
      ['size as string', { commits: [{ ...good, size: '0' }] }, 'commits[0].size'],
      ['unknown element field', { commits: [good, { ...good, sjid: 3 }] }, 'commits[1].sjid'],
      ['element not an object', { commits: [good, 'a'] }, 'commits[1]'],
      ['deletion with blocks', { commits: [{ path: 'a', size: 1, mtime: 0, blocks: ['a'.repeat(64)], deleted: true }] }, 'commits[0]'],
    ];
    it.each(bad)('rejects %s with 400 invalid naming the field, and changes nothing', async (_what, json, field) => {
      const m = await createWorkspace(h.url);
      const before = await storedState(h);
      const res = await commits(m, json);
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'invalid', message: expect.any(String), field });
      expect(await storedState(h)).toEqual(before);
    });

    it('refuses bad JSON, other members and strangers', async () => {
      const m = await createWorkspace(h.url);
      const other = await createWorkspace(h.url);
      const body = { commits: [{ path: 'a', size: 0, mtime: 0, blocks: [] }] };
      const badJson = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commits`, { token: m.token, body: '{"commits":[', headers: { 'content-type': 'application/json' } });
      expect(badJson.body.error).toBe('bad_json');
      expect((await commits(m, body, other.token)).status).toBe(403);
      expect((await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commits`, { json: body })).status).toBe(401);
      expect(await head(h.url, m)).toBe(0);
    });
  });

  describe('batch block download', () => {
    let a: Member;
    let b: Member;
    let blocks: TestBlock[];
    let foreign: TestBlock;
    beforeAll(async () => {
      a = await createWorkspace(h.url, 'A');
      b = await createWorkspace(h.url, 'B');
      blocks = [makeBlock(1), makeBlock(70_000), makeBlock(300), makeBlock(MAX_BLOCK_SIZE)];
      await commitFile(h.url, a, 'f', blocks);
      foreign = makeBlock(500);
      await commitFile(h.url, b, 'g', [foreign]);
    });

    it('sends the blocks exactly, in request order, and absent records for blocks the namespace may not read', async () => {
      const unknown = makeBlock(10).hash;
      const order = [blocks[2].hash, foreign.hash, blocks[0].hash, unknown, blocks[3].hash, blocks[1].hash];
      const metrics = h.server.metrics();
      const res = await fetchBlocks(a, { hashes: order });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/octet-stream');
      // Compared by content hash: a deep comparison of 4 MiB buffers is very slow in vitest.
      const got = records(res.body).map((r) => ({ hash: r.hash, content: r.bytes && sha256(r.bytes), length: r.bytes?.length }));
      const sizes = new Map(blocks.map((block) => [block.hash as string, block.bytes.length]));
      expect(got).toEqual(
        order.map((hash) => (hash === foreign.hash || hash === unknown ? { hash, content: null, length: undefined } : { hash, content: hash, length: sizes.get(hash) })),
      );
      await until(() => h.server.metrics().blockBatchesServed === metrics.blockBatchesServed + 1);
      const sent = blocks.reduce((n, block) => n + block.bytes.length, 0);
      expect(h.server.metrics().blockBytesServed - metrics.blockBytesServed).toBe(sent);
      expect(h.server.metrics().blockRequestsServed - metrics.blockRequestsServed).toBe(4);
    });

    it('sends a long mixed batch byte-exact and in order: small blocks read whole, large ones streamed, absent ones between', async () => {
      const m = await createWorkspace(h.url);
      // Sizes around where the file store switches from reading whole to streaming (64 KiB), among many small ones.
      const sizes = Array.from({ length: 300 }, (_, i) => [65_535, 65_536, 65_537, 200_000][i % 37] ?? 200 + ((i * 977) % 2900));
      const stored = sizes.map((size) => makeBlock(size));
      await commitFile(h.url, m, 'mixed', stored);
      const absent = Array.from({ length: 20 }, () => makeBlock(100).hash);
      const order: BlockHash[] = [];
      stored.forEach((block, i) => {
        order.push(block.hash);
        if (i % 15 === 7) order.push(absent[Math.floor(i / 15)]);
      });
      const metrics = h.server.metrics();
      const res = await fetchBlocks(m, { hashes: order });
      expect(res.status).toBe(200);
      const got = records(res.body).map((r) => ({ hash: r.hash, content: r.bytes && sha256(r.bytes) }));
      expect(got).toEqual(order.map((hash) => ({ hash, content: absent.includes(hash) ? null : hash })));
      await until(() => h.server.metrics().blockBatchesServed === metrics.blockBatchesServed + 1);
      expect(h.server.metrics().blockBytesServed - metrics.blockBytesServed).toBe(sizes.reduce((n, size) => n + size, 0));
      expect(h.server.metrics().blockRequestsServed - metrics.blockRequestsServed).toBe(stored.length);
    });

    it('serves a small block by the single GET too', async () => {
      const res = await api(h.url, 'GET', `/api/v1/blocks/${blocks[2].hash}?ns=${a.ns}`, { token: a.token });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-length')).toBe('300');
      expect(res.body.equals(blocks[2].bytes)).toBe(true);
    });

    it('stops before the block that would pass 16 MiB: the rest is simply absent', async () => {
      const m = await createWorkspace(h.url);
      const big = Array.from({ length: 5 }, () => makeBlock(MAX_BLOCK_SIZE));
      const small = makeBlock(10);
      await commitFile(h.url, m, 'big', [...big, small]);
      const order = [small.hash, ...big.map((block) => block.hash), makeBlock(1).hash];
      const res = await fetchBlocks(m, { hashes: order });
      expect(res.status).toBe(200);
      const got = records(res.body);
      // 10 bytes + 3 × 4 MiB fit; a fourth 4 MiB block would pass 16 MiB.
      expect(got.map((r) => r.hash)).toEqual(order.slice(0, 4));
      expect(got.map((r) => r.bytes && sha256(r.bytes))).toEqual(order.slice(0, 4));
      expect(got.reduce((n, r) => n + (r.bytes?.length ?? 0), 0)).toBeLessThanOrEqual(MAX_BLOCK_BATCH_BYTES);
      // Exactly 16 MiB is allowed.
      const exact = records((await fetchBlocks(m, { hashes: big.slice(0, 4).map((block) => block.hash) })).body);
      expect(exact.length).toBe(4);
    });

    it('answers 403 to a member of another namespace and 401 to no token', async () => {
      const res = await fetchBlocks(a, { hashes: [blocks[0].hash] }, b.token);
      expect(res.status).toBe(403);
      expect(res.body.error).toBe('forbidden');
      expect((await api(h.url, 'POST', `/api/v1/ns/${a.ns}/blocks`, { json: { hashes: [blocks[0].hash] } })).status).toBe(401);
    });

    const hash = 'ab'.repeat(32);
    it.each([
      ['a repeated hash', { hashes: [hash, 'cd'.repeat(32), hash] }, 'hashes[2]'],
      ['no hashes', { hashes: [] }, 'hashes'],
      ['1001 hashes', { hashes: Array.from({ length: 1001 }, (_, i) => i.toString(16).padStart(64, '0')) }, 'hashes'],
      ['a bad hash', { hashes: [hash, 'AB'.repeat(32)] }, 'hashes[1]'],
      ['hashes not an array', { hashes: hash }, 'hashes'],
      ['an unknown field', { hashes: [hash], ns: 'x' }, 'body.ns'],
    ] as Array<[string, unknown, string]>)('refuses %s with 400 invalid', async (_what, json, field) => {
      const res = await fetchBlocks(a, json);
      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'invalid', message: expect.any(String), field });
    });

    it('refuses bad JSON and other media types', async () => {
      const post = (body: string, type: string) =>
        api(h.url, 'POST', `/api/v1/ns/${a.ns}/blocks`, { token: a.token, body, headers: { 'content-type': type } });
      expect((await post('{"hashes":', 'application/json')).body.error).toBe('bad_json');
      expect((await post(JSON.stringify({ hashes: [blocks[0].hash] }), 'text/plain')).status).toBe(415);
    });
  });

  describe('batch download under an egress limit', () => {
    let slow: Harness;
    let m: Member;
    let blocks: TestBlock[];
    beforeAll(async () => {
      slow = await startHarness({ backends: backendCase, egressBytesPerSecond: 1_000_000 });
      m = await createWorkspace(slow.url);
      blocks = [makeBlock(700_000), makeBlock(800_000)];
      await commitFile(slow.url, m, 'slow.bin', blocks);
    });
    afterAll(async () => {
      await slow.stop();
    });

    it('paces block bytes like single downloads, sharing the rate with them', async () => {
      const started = Date.now();
      const [batch, single] = await Promise.all([
        api(slow.url, 'POST', `/api/v1/ns/${m.ns}/blocks`, { token: m.token, json: { hashes: blocks.map((b) => b.hash) } }),
        api(slow.url, 'GET', `/api/v1/blocks/${blocks[0].hash}?ns=${m.ns}`, { token: m.token }),
      ]);
      expect(records(batch.body).map((r) => r.bytes && sha256(r.bytes))).toEqual(blocks.map((b) => b.hash));
      expect(single.body.length).toBe(700_000);
      // 2.2 MB at 1 MB/s in total (less the limiter's burst).
      expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    });

    it('paces a batch of many small blocks too', async () => {
      const small = Array.from({ length: 400 }, () => makeBlock(3000));
      await commitFile(slow.url, m, 'small.bin', small);
      const started = Date.now();
      const res = await api(slow.url, 'POST', `/api/v1/ns/${m.ns}/blocks`, { token: m.token, json: { hashes: small.map((b) => b.hash) } });
      expect(records(res.body).map((r) => r.bytes && sha256(r.bytes))).toEqual(small.map((b) => b.hash));
      // 1.2 MB at 1 MB/s (less the limiter's burst of 50 kB).
      expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    });

    it('counts only the bytes written, and no whole block or batch, when the client aborts mid-batch', async () => {
      const before = slow.server.metrics();
      const abort = new AbortController();
      const res = await fetch(`${slow.url}/api/v1/ns/${m.ns}/blocks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${m.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ hashes: blocks.map((b) => b.hash) }),
        signal: abort.signal,
      });
      const reader = res.body!.getReader();
      let received = 0;
      while (received < 200_000) received += (await reader.read()).value!.length;
      abort.abort();
      await new Promise((r) => setTimeout(r, 500));
      const after = slow.server.metrics();
      expect(after.blockBatchesServed).toBe(before.blockBatchesServed);
      expect(after.blockRequestsServed).toBe(before.blockRequestsServed);
      const served = after.blockBytesServed - before.blockBytesServed;
      expect(served).toBeGreaterThanOrEqual(received - 36);
      expect(served).toBeLessThan(700_000);
    });
  });
});
