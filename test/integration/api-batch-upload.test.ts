import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCK_BATCH_BYTES, MAX_BLOCK_SIZE } from '../../src/protocol/index.ts';
import { BACKEND_CASES } from '../support/backend-cases.ts';
import { api, createWorkspace, makeBlock, putBlock, sha256, startHarness, type Harness, type Member, type TestBlock } from './helpers.ts';

/** POST /api/v1/blocks/batch on every back end: a batch is stored whole, or refused whole with nothing kept. */

const ABSENT = 0xffff_ffff;

/** One record as the protocol spells it; `length` may lie, `bytes` may be cut. */
function record(hash: string, bytes: Buffer | null, length = bytes?.length ?? ABSENT): Buffer {
  const header = Buffer.alloc(36);
  Buffer.from(hash, 'hex').copy(header);
  header.writeUInt32BE(length, 32);
  return Buffer.concat([header, bytes ?? Buffer.alloc(0)]);
}
const body = (blocks: TestBlock[]) => Buffer.concat(blocks.map((block) => record(block.hash, block.bytes)));

describe.each(BACKEND_CASES)('batch block upload on $name', (backendCase) => {
  let h: Harness;
  let m: Member;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
    m = await createWorkspace(h.url);
  });
  afterAll(async () => {
    await h.stop();
  });

  const upload = (bytes: Buffer, token: string | null = m.token) =>
    api(h.url, 'POST', '/api/v1/blocks/batch', { token: token ?? undefined, body: bytes, headers: { 'content-type': 'application/octet-stream' } });

  it('stores every block, byte-exact and downloadable, and counts the batch and its bytes', async () => {
    const blocks = [makeBlock(1), makeBlock(70_000), makeBlock(300), makeBlock(MAX_BLOCK_SIZE), makeBlock(2048)];
    const before = h.server.metrics();
    const res = await upload(body(blocks));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ created: 5, existing: 0 });
    const after = h.server.metrics();
    expect(after.blockBatchesReceived - before.blockBatchesReceived).toBe(1);
    expect(after.blockBytesReceived - before.blockBytesReceived).toBe(blocks.reduce((n, b) => n + b.bytes.length, 0));
    const stored = await h.storedState();
    expect(stored.partial).toEqual([]);
    for (const block of blocks) expect(stored.blocks).toContain(block.hash);

    // Committed without another upload: the server has them all.
    const size = blocks.reduce((n, b) => n + b.bytes.length, 0);
    const commit = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, {
      token: m.token,
      json: { path: 'batched.bin', size, mtime: 1, blocks: blocks.map((b) => b.hash) },
    });
    expect(commit.status).toBe(200);
    for (const block of blocks) {
      const got = await api(h.url, 'GET', `/api/v1/blocks/${block.hash}?ns=${m.ns}`, { token: m.token });
      expect(got.status).toBe(200);
      expect(got.body.length).toBe(block.bytes.length);
      expect(sha256(got.body)).toBe(block.hash);
    }
  });

  // s3rver answers a listing of more than 1000 keys with a 500: its harness stays under that.
  const manyBlocks = backendCase.blocks === 's3' ? 900 : 1000;
  it('answers how many blocks were new and how many it had, and stores a batch of many small blocks', async () => {
    const known = makeBlock(500);
    await putBlock(h.url, m.token, known);
    const fresh = [makeBlock(600), makeBlock(700)];
    expect((await upload(body([fresh[0], known, fresh[1]]))).body).toEqual({ created: 2, existing: 1 });
    expect((await upload(body([known, ...fresh]))).body).toEqual({ created: 0, existing: 3 });

    const many = Array.from({ length: manyBlocks }, (_, i) => makeBlock(200 + (i % 3000)));
    const res = await upload(body(many));
    expect(res.body).toEqual({ created: manyBlocks, existing: 0 });
    const stored = new Set((await h.storedState()).blocks);
    expect(many.every((block) => stored.has(block.hash))).toBe(true);
  });

  it('stores blocks shared by concurrent batches and single uploads once, leaving no temp files', async () => {
    const shared = Array.from({ length: 20 }, () => makeBlock(3000));
    const own = [makeBlock(100), makeBlock(101)];
    const answers = await Promise.all([
      upload(body([own[0], ...shared])),
      upload(body([...shared].reverse().concat(own[1]))),
      ...shared.slice(0, 5).map((block) => putBlock(h.url, m.token, block)),
    ]);
    const [first, second] = answers as Array<{ status: number; body: { created: number; existing: number } }>;
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(first.body.created + first.body.existing).toBe(21);
    expect(second.body.created + second.body.existing).toBe(21);
    const stored = await h.storedState();
    expect(stored.partial).toEqual([]);
    for (const block of [...shared, ...own]) expect(stored.blocks.filter((hash) => hash === block.hash)).toEqual([block.hash]);
  });

  it('refuses a batch with a wrong block, naming the record, and stores none of it', async () => {
    const blocks = [makeBlock(100), makeBlock(200), makeBlock(300), makeBlock(400)];
    const wrong = makeBlock(300).bytes;
    const bytes = Buffer.concat([record(blocks[0].hash, blocks[0].bytes), record(blocks[1].hash, blocks[1].bytes), record(blocks[2].hash, wrong), record(blocks[3].hash, blocks[3].bytes)]);
    const before = await h.storedState();
    const metrics = h.server.metrics();
    const res = await upload(bytes);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'hash_mismatch', message: expect.stringContaining('blocks[2]'), index: 2 });
    expect(await h.storedState()).toEqual(before);
    expect(h.server.metrics().blockBatchesReceived).toBe(metrics.blockBatchesReceived);
    expect(h.server.metrics().blockBytesReceived).toBe(metrics.blockBytesReceived);
  });

  const a = makeBlock(1000);
  const b = makeBlock(2000);
  it.each([
    ['a body cut inside a block', () => Buffer.concat([record(a.hash, a.bytes), record(b.hash, b.bytes).subarray(0, 36 + 1999)]), 'blocks[1]'],
    ['a body cut inside a header', () => Buffer.concat([record(a.hash, a.bytes), record(b.hash, b.bytes).subarray(0, 20)]), 'blocks[1]'],
    ['an empty body', () => Buffer.alloc(0), 'blocks'],
    ['a zero length', () => Buffer.concat([record(a.hash, a.bytes), record(b.hash, null, 0)]), 'blocks[1].length'],
    ['the absent marker', () => Buffer.concat([record(a.hash, a.bytes), record(b.hash, null)]), 'blocks[1].length'],
    ['a length over 4 MiB', () => record(a.hash, a.bytes, MAX_BLOCK_SIZE + 1), 'blocks[0].length'],
    ['a repeated block', () => Buffer.concat([record(a.hash, a.bytes), record(b.hash, b.bytes), record(a.hash, a.bytes)]), 'blocks[2]'],
    ['1001 blocks', () => Buffer.concat(Array.from({ length: 1001 }, (_, i) => record(i.toString(16).padStart(64, '0'), Buffer.from([i & 255])))), 'blocks[1000]'],
  ] as Array<[string, () => Buffer, string]>)('refuses %s with 400 invalid naming the record, storing nothing', async (_what, make, field) => {
    const before = await h.storedState();
    const res = await upload(make());
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid', message: expect.stringContaining(field), field });
    expect(await h.storedState()).toEqual(before);
  });

  it('refuses more than 16 MiB of blocks with 413, by the declared length or at the record that passes it', async () => {
    const big = Array.from({ length: 4 }, () => makeBlock(MAX_BLOCK_SIZE));
    const before = await h.storedState();
    // 5 × 4 MiB: the declared length is over the limit, refused before the body is read.
    const declared = await upload(body([...big, makeBlock(MAX_BLOCK_SIZE)]));
    expect(declared.status).toBe(413);
    expect(declared.body.error).toBe('too_large');
    // 16 MiB and 10 bytes: the body fits the limit (headers included), its blocks do not.
    const counted = await upload(body([...big, makeBlock(10)]));
    expect(counted.status).toBe(413);
    expect(counted.body).toEqual({ error: 'too_large', message: expect.stringContaining(String(MAX_BLOCK_BATCH_BYTES)), field: 'blocks[4]' });
    expect(await h.storedState()).toEqual(before);
    // Exactly 16 MiB is allowed.
    expect((await upload(body(big))).body).toEqual({ created: 4, existing: 0 });
  });

  it('answers 401 without a valid token, storing nothing', async () => {
    const block = makeBlock(100);
    const before = await h.storedState();
    expect((await upload(body([block]), null)).status).toBe(401);
    expect((await upload(body([block]), 'x'.repeat(43))).status).toBe(401);
    expect(await h.storedState()).toEqual(before);
  });
});
