import { S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCK_SIZE, type BlockHash } from '../../src/protocol/index.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { openS3BlockStore, s3ClientConfig } from '../../src/server/backends/s3.ts';
import { silentLogger } from '../../src/server/log.ts';
import { BlockRejectedError, type BlockBody, type BlockStore, type OpenedBlock } from '../../src/server/storage/block-store.ts';
import { FsBlockStore, IN_MEMORY_BELOW } from '../../src/server/storage/fs-block-store.ts';
import { ReadStalledError } from '../../src/server/storage/read-stall-guard.ts';
import { S3BlockStore } from '../../src/server/storage/s3-block-store.ts';
import { StoreUnavailableError } from '../../src/server/storage/store-errors.ts';
import { startS3TestServer, type S3TestServer } from '../support/s3-test-server.ts';
import { api, createWorkspace, makeBlock, until, type Member, type TestBlock } from './helpers.ts';

let s3: S3TestServer;
beforeAll(async () => {
  s3 = await startS3TestServer();
});
afterAll(async () => {
  await s3?.stop();
});

/** A body that hands `bytes` over in chunks, yielding between them so concurrent uploads interleave. */
function bodyOf(bytes: Buffer, chunkSize = 64 * 1024): BlockBody {
  return async (onChunk) => {
    for (let offset = 0; offset < bytes.length; offset += chunkSize) {
      await onChunk(bytes.subarray(offset, offset + chunkSize));
      await new Promise((resolve) => setImmediate(resolve));
    }
    return bytes.length;
  };
}

/** A body that breaks off with `error` after `sendBytes` bytes, as a dropped client connection does. */
function brokenBody(bytes: Buffer, sendBytes: number, error: Error): BlockBody {
  return async (onChunk) => {
    await onChunk(bytes.subarray(0, sendBytes));
    throw error;
  };
}

async function readAll(stream: AsyncIterable<Buffer>): Promise<{ bytes: Buffer; chunks: number }> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk);
  return { bytes: Buffer.concat(parts), chunks: parts.length };
}

/** An opened block's bytes, whether the store streamed them or handed them over in memory. */
async function bytesOf(read: OpenedBlock | null): Promise<Buffer> {
  if (!read) throw new Error('the block is not stored');
  const bytes = read.bytes ?? (await readAll(read.stream)).bytes;
  expect(bytes.length).toBe(read.size);
  return bytes;
}

const unknownHash = () => randomBytes(32).toString('hex') as BlockHash;
const uniquePrefix = (what: string) => `${what}-${randomBytes(4).toString('hex')}/`;

interface OpenedStore {
  store: BlockStore;
  /** Everything the store keeps (files incl. temp files, or object keys), to show a failed upload left nothing. */
  stored(): Promise<string[]>;
  dispose(): Promise<void>;
}

interface StoreFactory {
  name: string;
  open(): Promise<OpenedStore>;
}

const filesStore: StoreFactory = {
  name: 'FsBlockStore',
  async open() {
    const root = await mkdtemp(join(tmpdir(), 'nearsync-blocks-'));
    const store = await FsBlockStore.open(root);
    return {
      store,
      async stored() {
        const entries = await readdir(root, { recursive: true, withFileTypes: true });
        return entries.filter((e) => e.isFile()).map((e) => relative(root, join(e.parentPath, e.name)));
      },
      async dispose() {
        await store.close();
        await rm(root, { recursive: true, force: true });
      },
    };
  },
};

const s3Store: StoreFactory = {
  name: 'S3BlockStore',
  async open() {
    const prefix = uniquePrefix('contract');
    const store = await openS3BlockStore(s3.location(prefix), s3.settings, silentLogger);
    return {
      store,
      stored: async () => (await s3.keys()).filter((key) => key.startsWith(prefix)),
      dispose: () => store.close(),
    };
  },
};

describe.each([filesStore, s3Store])('BlockStore contract: $name', (factory) => {
  let opened: OpenedStore;
  let store: BlockStore;
  beforeAll(async () => {
    opened = await factory.open();
    store = opened.store;
  });
  afterAll(async () => {
    await opened?.dispose();
  });

  const rejection = async (promise: Promise<unknown>) => {
    const err = await promise.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BlockRejectedError);
    return (err as BlockRejectedError).reason;
  };

  it('stores a new block (created), then knows it (exists) and keeps one copy', async () => {
    const block = makeBlock(100_000);
    expect(await store.stat(block.hash)).toBeNull();
    expect(await store.put(block.hash, bodyOf(block.bytes), MAX_BLOCK_SIZE)).toEqual({ status: 'created', size: 100_000 });
    expect(await store.stat(block.hash)).toBe(100_000);
    expect(await store.put(block.hash, bodyOf(block.bytes), MAX_BLOCK_SIZE)).toEqual({ status: 'exists', size: 100_000 });
    expect((await opened.stored()).filter((name) => name.endsWith(block.hash))).toHaveLength(1);
  });

  it('rejects a body whose SHA-256 differs (hash_mismatch) and keeps nothing', async () => {
    const before = await opened.stored();
    const block = makeBlock(70_000);
    const other = makeBlock(70_000);
    expect(await rejection(store.put(block.hash, bodyOf(other.bytes), MAX_BLOCK_SIZE))).toBe('hash_mismatch');
    expect(await store.stat(block.hash)).toBeNull();
    expect(await store.stat(other.hash)).toBeNull();
    expect(await opened.stored()).toEqual(before);
  });

  it('rejects a body over maxBytes (too_large) and an empty one (empty), keeping nothing', async () => {
    const before = await opened.stored();
    const big = makeBlock(5000);
    expect(await rejection(store.put(big.hash, bodyOf(big.bytes, 1000), 4096))).toBe('too_large');
    expect(await store.stat(big.hash)).toBeNull();
    const empty = makeBlock(0);
    expect(await rejection(store.put(empty.hash, bodyOf(empty.bytes), MAX_BLOCK_SIZE))).toBe('empty');
    expect(await store.stat(empty.hash)).toBeNull();
    expect(await opened.stored()).toEqual(before);
  });

  it('keeps the stored bytes when a wrong body arrives for a block it holds', async () => {
    const block = makeBlock(30_000);
    await store.put(block.hash, bodyOf(block.bytes), MAX_BLOCK_SIZE);
    const liar = makeBlock(30_000);
    expect(await rejection(store.put(block.hash, bodyOf(liar.bytes), MAX_BLOCK_SIZE))).toBe('hash_mismatch');
    const read = await store.openRead(block.hash);
    expect((await bytesOf(read)).equals(block.bytes)).toBe(true);
  });

  it("passes on the body's own error when the upload breaks off, keeps nothing, and takes the block later", async () => {
    const before = await opened.stored();
    const block = makeBlock(200_000);
    const broken = new Error('client went away');
    await expect(store.put(block.hash, brokenBody(block.bytes, 100_000, broken), MAX_BLOCK_SIZE)).rejects.toBe(broken);
    expect(await store.stat(block.hash)).toBeNull();
    expect(await opened.stored()).toEqual(before);
    expect((await store.put(block.hash, bodyOf(block.bytes), MAX_BLOCK_SIZE)).status).toBe('created');
  });

  it('answers statMany aligned with its input, repeats included, beyond one batch', async () => {
    const held = [makeBlock(1000), makeBlock(2000), makeBlock(3000)];
    for (const block of held) await store.put(block.hash, bodyOf(block.bytes), MAX_BLOCK_SIZE);
    const hashes: BlockHash[] = [];
    const expected: (number | null)[] = [];
    for (let i = 0; i < 150; i++) {
      if (i % 10 === 3) {
        const block = held[i % 3];
        hashes.push(block.hash);
        expected.push(block.bytes.length);
      } else if (i % 10 === 7) {
        hashes.push(hashes[i - 1]);
        expected.push(expected[i - 1]);
      } else {
        hashes.push(unknownHash());
        expected.push(null);
      }
    }
    expect(await store.statMany(hashes)).toEqual(expected);
    expect(await store.statMany([])).toEqual([]);
  });

  it('streams a block back byte for byte, and answers null for one it lacks', async () => {
    const block = makeBlock(MAX_BLOCK_SIZE);
    await store.put(block.hash, bodyOf(block.bytes, 256 * 1024), MAX_BLOCK_SIZE);
    const read = await store.openRead(block.hash);
    expect(read?.size).toBe(MAX_BLOCK_SIZE);
    // A large block always comes as a stream, read in pieces.
    const { bytes, chunks } = await readAll(read!.stream!);
    expect(bytes.equals(block.bytes)).toBe(true);
    expect(chunks).toBeGreaterThan(1);
    expect(await store.openRead(unknownHash())).toBeNull();
  });

  it('takes concurrent uploads of one block, stores it once, and serves it intact', async () => {
    const block = makeBlock(1_000_000);
    const results = await Promise.all(Array.from({ length: 4 }, () => store.put(block.hash, bodyOf(block.bytes), MAX_BLOCK_SIZE)));
    for (const result of results) {
      expect(result.size).toBe(1_000_000);
      expect(['created', 'exists']).toContain(result.status);
    }
    expect(results.some((r) => r.status === 'created')).toBe(true);
    expect((await opened.stored()).filter((name) => name.endsWith(block.hash))).toHaveLength(1);
    const read = await store.openRead(block.hash);
    expect((await bytesOf(read)).equals(block.bytes)).toBe(true);
  });

  it('reads back blocks of every size around where a store may switch from memory to streaming', async () => {
    for (const size of [1, 2_000, IN_MEMORY_BELOW - 1, IN_MEMORY_BELOW, IN_MEMORY_BELOW + 1, 3 * IN_MEMORY_BELOW]) {
      const block = makeBlock(size);
      await store.put(block.hash, bodyOf(block.bytes), MAX_BLOCK_SIZE);
      const read = await store.openRead(block.hash);
      expect(read?.size).toBe(size);
      expect((await bytesOf(read)).equals(block.bytes)).toBe(true);
    }
  });

  it('stores a batch with putMany, aligned with its input: new blocks created, known ones and repeats exist', async () => {
    const known = makeBlock(700);
    await store.put(known.hash, bodyOf(known.bytes), MAX_BLOCK_SIZE);
    const fresh = Array.from({ length: 40 }, (_, i) => makeBlock(100 + i * 50));
    const results = await store.putMany([fresh[0], known, ...fresh.slice(1), fresh[0]]);
    expect(results).toEqual([
      { status: 'created', size: fresh[0].bytes.length },
      { status: 'exists', size: 700 },
      ...fresh.slice(1).map((block) => ({ status: 'created', size: block.bytes.length })),
      { status: 'exists', size: fresh[0].bytes.length },
    ]);
    for (const block of fresh) {
      expect(await store.stat(block.hash)).toBe(block.bytes.length);
      expect((await bytesOf(await store.openRead(block.hash))).equals(block.bytes)).toBe(true);
    }
    expect((await store.putMany(fresh.slice(0, 3))).map((result) => result.status)).toEqual(['exists', 'exists', 'exists']);
  });

  it('takes concurrent batches and single uploads of the same blocks, storing each once', async () => {
    const blocks = Array.from({ length: 12 }, () => makeBlock(5000));
    const [first, second, ...singles] = await Promise.all([
      store.putMany(blocks),
      store.putMany([...blocks].reverse()),
      ...blocks.slice(0, 4).map((block) => store.put(block.hash, bodyOf(block.bytes), MAX_BLOCK_SIZE)),
    ]);
    for (const results of [first, second, singles] as Array<Array<{ status: string; size: number }>>) {
      for (const result of results) {
        expect(result.size).toBe(5000);
        expect(['created', 'exists']).toContain(result.status);
      }
    }
    const names = await opened.stored();
    for (const block of blocks) expect(names.filter((name) => name.endsWith(block.hash))).toHaveLength(1);
  });
});

describe('S3BlockStore', () => {
  /** A store with its own (cold) cache over the shared bucket. */
  const openStore = async (prefix: string, readStallMs?: number) =>
    S3BlockStore.open(new S3Client(s3ClientConfig(s3.settings, silentLogger)), { bucket: s3.bucket, prefix, readStallMs });
  const put = (store: BlockStore, block: TestBlock) => store.put(block.hash, bodyOf(block.bytes), MAX_BLOCK_SIZE);

  it('keeps each block at <prefix>blocks/<first two hex digits>/<hash>', async () => {
    const prefix = uniquePrefix('layout');
    const store = await openS3BlockStore(s3.location(`${prefix}/`), s3.settings, silentLogger);
    try {
      const block = makeBlock(1234);
      await put(store, block);
      expect((await s3.keys()).filter((key) => key.startsWith(prefix))).toEqual([`${prefix}blocks/${block.hash.slice(0, 2)}/${block.hash}`]);
    } finally {
      await store.close();
    }
  });

  it('checks many blocks with bounded parallel HeadObject calls, and caches presence but never absence', async () => {
    const prefix = uniquePrefix('stat');
    const writer = await openStore(prefix);
    const held = [makeBlock(100), makeBlock(200), makeBlock(300)];
    for (const block of held) await put(writer, block);
    await writer.close();

    const store = await openStore(prefix);
    try {
      const unknown = Array.from({ length: 200 }, unknownHash);
      const asked = [...unknown, ...held.map((b) => b.hash)];
      s3.resetRequests();
      // Every hash twice in a row: concurrent checks of one block share a request.
      const sizes = await store.statMany(asked.flatMap((hash) => [hash, hash]));
      expect(sizes.slice(0, 400).every((size) => size === null)).toBe(true);
      expect(sizes.slice(400)).toEqual([100, 100, 200, 200, 300, 300]);
      expect(s3.requests.byMethod).toEqual({ HEAD: 203 });
      expect(s3.requests.maxInFlight).toBeGreaterThan(1);
      expect(s3.requests.maxInFlight).toBeLessThanOrEqual(32);

      s3.resetRequests();
      expect((await store.statMany(asked)).slice(200)).toEqual([100, 200, 300]);
      expect(s3.requests.byMethod).toEqual({ HEAD: 200 });
    } finally {
      await store.close();
    }
  });

  it('removes blocks in DeleteObjects batches, absent ones included, and forgets them', async () => {
    const prefix = uniquePrefix('remove');
    // 1,000 keys a request in production; 10 here, so three batches need only 23 blocks.
    const store = await S3BlockStore.open(new S3Client(s3ClientConfig(s3.settings, silentLogger)), { bucket: s3.bucket, prefix, deleteBatch: 10 });
    try {
      const blocks = Array.from({ length: 21 }, (_, i) => makeBlock(10 + i));
      await store.putMany(blocks);
      const kept = makeBlock(4321);
      await put(store, kept);
      s3.resetRequests();
      await store.remove([...blocks.map((b) => b.hash), unknownHash(), unknownHash()]);
      expect(s3.requests.byMethod).toEqual({ POST: 3 });
      expect((await s3.keys()).filter((key) => key.startsWith(prefix))).toEqual([`${prefix}blocks/${kept.hash.slice(0, 2)}/${kept.hash}`]);
      expect(await store.stat(blocks[0].hash)).toBeNull();
      expect(await store.stat(kept.hash)).toBe(4321);
    } finally {
      await store.close();
    }
  });

  it('falls back to one DeleteObject per block on a store that refuses DeleteObjects, and stays with it', async () => {
    // An S3-compatible front that implements everything but the multi-object delete (501), as some do.
    const front = createServer((req, res) => {
      if (req.method === 'POST' && /[?&]delete(=|&|$)/.test(req.url ?? '')) {
        req.resume();
        res.writeHead(501, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>not here</Message></Error>');
        return;
      }
      const upstream = new URL(s3.endpoint);
      const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
    const prefix = uniquePrefix('remove-single');
    const store = await S3BlockStore.open(new S3Client(s3ClientConfig({ ...s3.settings, endpoint }, silentLogger)), { bucket: s3.bucket, prefix });
    try {
      const blocks = [makeBlock(11), makeBlock(12), makeBlock(13)];
      await store.putMany(blocks);
      s3.resetRequests();
      await store.remove([blocks[0].hash, blocks[1].hash, unknownHash()]);
      expect(s3.requests.byMethod).toEqual({ DELETE: 3 });
      await store.remove([blocks[2].hash]);
      expect(s3.requests.byMethod).toEqual({ DELETE: 4 });
      expect((await s3.keys()).filter((key) => key.startsWith(prefix))).toEqual([]);
    } finally {
      await store.close();
      front.closeAllConnections();
      await new Promise((resolve) => front.close(resolve));
    }
  });

  it('buffers at most uploadsInMemory uploads at once: the next body is read only when one is done', async () => {
    const store = await S3BlockStore.open(new S3Client(s3ClientConfig(s3.settings, silentLogger)), {
      bucket: s3.bucket,
      prefix: uniquePrefix('slots'),
      uploadsInMemory: 1,
    });
    try {
      const first = makeBlock(300_000);
      const second = makeBlock(300_000);
      const events: string[] = [];
      // Each body reads its first 1,000 bytes, then waits until the test lets it finish.
      const gates = new Map<string, () => void>();
      const bodyOf =
        (name: string, block: ReturnType<typeof makeBlock>): BlockBody =>
        async (onChunk) => {
          events.push(name);
          await onChunk(block.bytes.subarray(0, 1000));
          await new Promise<void>((resolve) => gates.set(name, resolve));
          await onChunk(block.bytes.subarray(1000));
          return block.bytes.length;
        };
      const putFirst = store.put(first.hash, bodyOf('first', first), MAX_BLOCK_SIZE);
      const putSecond = store.put(second.hash, bodyOf('second', second), MAX_BLOCK_SIZE);
      // Whichever HEAD answers first takes the one slot: the order between the two is not the point.
      await until(() => gates.size === 1 && store.uploadsBuffered === 1, 10_000, 'one upload buffering');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(events).toHaveLength(1);
      const [started] = events;
      const other = started === 'first' ? 'second' : 'first';
      gates.get(started)!();
      await until(() => gates.has(other), 10_000, 'the other body read once the first upload is done');
      expect(events).toEqual([started, other]);
      gates.get(other)!();
      expect((await putFirst).status).toBe('created');
      expect((await putSecond).status).toBe('created');
      expect(store.uploadsBuffered).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('sees a block another instance stored, and does not upload it again', async () => {
    const prefix = uniquePrefix('shared');
    const first = await openStore(prefix);
    const second = await openStore(prefix);
    try {
      const block = makeBlock(50_000);
      expect(await second.stat(block.hash)).toBeNull();
      expect((await put(first, block)).status).toBe('created');
      s3.resetRequests();
      expect(await put(second, block)).toEqual({ status: 'exists', size: 50_000 });
      expect(s3.requests.byMethod).toEqual({ HEAD: 1 });
    } finally {
      await first.close();
      await second.close();
    }
  });

  it('refuses to start on a bucket that does not exist, or with a key the endpoint does not know', async () => {
    await expect(openS3BlockStore(`s3://nearsync-missing-${randomBytes(4).toString('hex')}`, s3.settings, silentLogger)).rejects.toThrow(
      /bucket "nearsync-missing-[0-9a-f]+" does not exist/,
    );
    await expect(
      openS3BlockStore(s3.location(), { ...s3.settings, accessKeyId: 'NOT-A-KEY', secretAccessKey: 'nope' }, silentLogger),
    ).rejects.toThrow(/access to bucket .* was denied/);
    await expect(openS3BlockStore(s3.location(), { ...s3.settings, secretAccessKey: undefined }, silentLogger)).rejects.toThrow(
      /AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together/,
    );
  });

  it('reports StoreUnavailableError while the endpoint is down, stores nothing, and works again once it is back', async () => {
    const prefix = uniquePrefix('outage');
    const store = await openStore(prefix);
    const held = makeBlock(10_000);
    await put(store, held);
    const block = makeBlock(20_000);
    try {
      await s3.pause();
      const failure = async (promise: Promise<unknown>) => {
        const err = await promise.then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(StoreUnavailableError);
        expect((err as StoreUnavailableError).engine).toBe('s3');
      };
      await failure(store.stat(block.hash));
      await failure(store.statMany([held.hash, block.hash]));
      await failure(put(store, block));
      await failure(store.openRead(held.hash));
    } finally {
      await s3.resume();
    }
    expect(await store.stat(block.hash)).toBeNull();
    expect((await put(store, block)).status).toBe('created');
    expect((await readAll((await store.openRead(held.hash))!.stream)).bytes.equals(held.bytes)).toBe(true);
    await store.close();
  });

  it('lets a slow reader take its time', async () => {
    const prefix = uniquePrefix('slow');
    const store = await openStore(prefix, 100);
    try {
      const block = makeBlock(MAX_BLOCK_SIZE);
      await put(store, block);
      const read = await store.openRead(block.hash);
      const parts: Buffer[] = [];
      for await (const chunk of read!.stream as AsyncIterable<Buffer>) {
        if (parts.length === 0) await new Promise((resolve) => setTimeout(resolve, 500));
        parts.push(chunk);
      }
      expect(Buffer.concat(parts).equals(block.bytes)).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('answers 5xx and throttling with StoreUnavailableError, and a refusal (403) with a plain error', async () => {
    // An endpoint whose answers the test sets: the bucket check passes, the rest as told.
    let answers: { head: number; other: [number, string] } = { head: 503, other: [500, 'InternalError'] };
    const endpointServer: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.method === 'HEAD') return void res.writeHead(req.url === '/struggling/' ? 200 : answers.head).end();
        const [status, code] = answers.other;
        res.writeHead(status, { 'Content-Type': 'application/xml' });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>test endpoint</Message></Error>`);
      });
    });
    await new Promise<void>((resolve) => endpointServer.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(endpointServer.address() as AddressInfo).port}`;
    const store = await S3BlockStore.open(new S3Client(s3ClientConfig({ ...s3.settings, endpoint }, silentLogger)), { bucket: 'struggling', prefix: '' });
    const failure = (promise: Promise<unknown>) => promise.then(() => null, (e: unknown) => e);
    try {
      const block = makeBlock(1000);
      expect(await failure(store.stat(block.hash))).toBeInstanceOf(StoreUnavailableError);
      expect(await failure(store.openRead(block.hash))).toBeInstanceOf(StoreUnavailableError);
      answers = { head: 404, other: [503, 'SlowDown'] };
      expect(await failure(put(store, block))).toBeInstanceOf(StoreUnavailableError);
      answers = { head: 404, other: [403, 'AccessDenied'] };
      const refused = await failure(put(store, block));
      expect(refused).not.toBeInstanceOf(StoreUnavailableError);
      expect(refused).toMatchObject({ name: 'AccessDenied' });
    } finally {
      await store.close();
      endpointServer.closeAllConnections();
      await new Promise((resolve) => endpointServer.close(resolve));
    }
  });

  it('cuts a download whose endpoint stops sending while the reader waits', async () => {
    // An endpoint that answers the bucket check, then sends a block's headers and its first bytes only.
    const stalling: Server = createServer((req, res) => {
      if (req.method === 'HEAD') return void res.writeHead(200).end();
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': 100_000 });
      res.write(Buffer.alloc(1000, 1));
    });
    await new Promise<void>((resolve) => stalling.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(stalling.address() as AddressInfo).port}`;
    const client = new S3Client(s3ClientConfig({ ...s3.settings, endpoint }, silentLogger));
    const store = await S3BlockStore.open(client, { bucket: 'stalling', prefix: '', readStallMs: 200 });
    try {
      const read = await store.openRead(unknownHash());
      expect(read?.size).toBe(100_000);
      await expect(readAll(read!.stream)).rejects.toBeInstanceOf(ReadStalledError);
    } finally {
      await store.close();
      stalling.closeAllConnections();
      await new Promise((resolve) => stalling.close(resolve));
    }
  });
});

describe('block routes with blocks in S3', () => {
  let server: RunningServer;
  let dataDir: string;
  let a: Member;
  let prefix: string;
  beforeAll(async () => {
    prefix = uniquePrefix('routes');
    dataDir = await mkdtemp(join(tmpdir(), 'nearsync-s3-it-'));
    server = await startServer({ dataDir, logger: silentLogger, backends: { blockStore: s3.location(prefix), s3: s3.settings } });
    a = await createWorkspace(server.url, 'S3 team');
  });
  afterAll(async () => {
    await server?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const upload = (block: TestBlock) => api(server.url, 'PUT', `/api/v1/blocks/${block.hash}`, { token: a.token, body: block.bytes });
  const missing = (hashes: string[]) => api(server.url, 'POST', '/api/v1/blocks/missing', { token: a.token, json: { hashes } });
  const download = (block: TestBlock) => api(server.url, 'GET', `/api/v1/blocks/${block.hash}?ns=${a.ns}`, { token: a.token });
  const commit = (path: string, blocks: TestBlock[]) =>
    api(server.url, 'POST', `/api/v1/ns/${a.ns}/commit`, {
      token: a.token,
      json: { path, size: blocks.reduce((n, b) => n + b.bytes.length, 0), mtime: 1_700_000_000_000, blocks: blocks.map((b) => b.hash) },
    });

  it('uploads into the bucket, answers the missing query, commits and serves byte-identical blocks', async () => {
    const one = makeBlock(MAX_BLOCK_SIZE);
    const two = makeBlock(123_457);
    expect((await upload(one)).status).toBe(201);
    expect((await upload(one)).status).toBe(200);
    expect((await missing([one.hash, two.hash])).body).toEqual({ missing: [two.hash] });

    const early = await commit('docs/big.bin', [one, two]);
    expect(early.status).toBe(409);
    expect(early.body).toMatchObject({ error: 'need_blocks', need: [two.hash] });
    expect((await upload(two)).status).toBe(201);
    expect((await missing([one.hash, two.hash])).body).toEqual({ missing: [] });
    expect((await commit('docs/big.bin', [one, two])).status).toBe(200);

    const journal = await api(server.url, 'GET', `/api/v1/ns/${a.ns}/journal`, { token: a.token });
    expect(journal.body.entries.map((e: { path: string; blocks: string[] }) => [e.path, e.blocks])).toEqual([['docs/big.bin', [one.hash, two.hash]]]);
    for (const block of [one, two]) {
      const res = await download(block);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-length')).toBe(String(block.bytes.length));
      expect((res.body as Buffer).equals(block.bytes)).toBe(true);
    }
    const keys = (await s3.keys()).filter((key) => key.startsWith(prefix));
    expect(keys).toEqual([one, two].map((b) => `${prefix}blocks/${b.hash.slice(0, 2)}/${b.hash}`).sort());
    await expect(readdir(join(dataDir, 'blocks'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('answers 503 unavailable while the S3 endpoint is down, and recovers when it is back', async () => {
    const held = makeBlock(40_000);
    expect((await upload(held)).status).toBe(201);
    expect((await commit('held.bin', [held])).status).toBe(200);
    const fresh = makeBlock(50_000);
    try {
      await s3.pause();
      for (const res of [await upload(fresh), await missing([fresh.hash]), await commit('fresh.bin', [fresh]), await download(held)]) {
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('1');
        expect(res.body).toMatchObject({ error: 'unavailable' });
      }
    } finally {
      await s3.resume();
    }
    expect((await missing([fresh.hash])).body).toEqual({ missing: [fresh.hash] });
    expect((await upload(fresh)).status).toBe(201);
    expect((await commit('fresh.bin', [fresh])).status).toBe(200);
    expect(((await download(held)).body as Buffer).equals(held.bytes)).toBe(true);
  });
});
