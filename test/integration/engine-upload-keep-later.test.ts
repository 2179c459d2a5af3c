import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keepFromSource } from '../../src/engine/keep-from-source.ts';
import { NamespaceSync } from '../../src/engine/namespace-sync.ts';
import { ServerApi } from '../../src/engine/server-api.ts';
import { ServerBlockSource } from '../../src/engine/server-source.ts';
import { uploadFile } from '../../src/engine/uploader.ts';
import { MAX_BLOCK_SIZE, parseFilePath, type BlockHash } from '../../src/protocol/index.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import { MemoryBlockStore, MemoryStateStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';

/**
 * Uploads that keep their local copy after the commit (`keepLater`, as the browser's upload
 * queue does), against the real server: nothing is written locally on the way, the server
 * gets every block and the commit (a 409 need list answered from the source), the copy kept
 * afterwards holds only blocks that still match their hash, and the engine waits for that
 * keep instead of downloading the upload, fetching only what the keep could not store.
 */

const SYNC_TIMEOUT_MS = 15_000;

let server: RunningServer;
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'nearsync-keep-later-'));
  server = await startServer({ host: '127.0.0.1', port: 0, dataDir, staticDir: null, logger: silentLogger });
});
afterAll(async () => {
  await server?.close();
  await rm(dataDir, { recursive: true, force: true });
});

const readBlob = (blob: Blob) => async (offset: number, length: number) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());

function countingApi(api: ServerApi, options: { tellNothingMissing?: boolean; unnamed?: 'sent' | 'refused' | { namedFirst: number } } = {}) {
  const counts = { commits: 0, questions: 0, named: 0, unnamed: 0 };
  return {
    counts,
    api: {
      missingBlocks: (hashes: BlockHash[]) => {
        counts.questions += 1;
        return options.tellNothingMissing ? Promise.resolve([]) : api.missingBlocks(hashes);
      },
      putBlock: (hash: BlockHash, body: Uint8Array | Blob) => {
        counts.named += 1;
        return api.putBlock(hash, body);
      },
      ...(options.unnamed
        ? {
            putUnnamedBlock: (body: Blob) => {
              counts.unnamed += 1;
              // 'refused': as a server without POST /api/v1/blocks answers; namedFirst: the first
              // requests reach instances with the route, the rest one without (a rolling deploy).
              const unnamed = options.unnamed!;
              const sends = unnamed === 'sent' || (typeof unnamed === 'object' && counts.unnamed <= unnamed.namedFirst);
              return sends ? api.putUnnamedBlock(body) : Promise.resolve(null);
            },
          }
        : {}),
      commit: (...args: Parameters<ServerApi['commit']>) => {
        counts.commits += 1;
        return api.commit(...args);
      },
      commitBatch: (...args: Parameters<ServerApi['commitBatch']>) => api.commitBatch(...args),
    },
  };
}

describe('uploads that keep their local copy later', () => {
  it('store nothing on the way, send what was read when the source changed, and keep afterwards only what still matches', async () => {
    const created = await new ServerApi(server.url).createWorkspace('keep later');
    const api = new ServerApi(server.url, created.token);
    const read = new Uint8Array(randomBytes(3 * MAX_BLOCK_SIZE + 777));
    // The file on disk changed after it was read: block 1 differs from what was hashed.
    const onDisk = read.slice();
    onDisk[MAX_BLOCK_SIZE + 5] ^= 0xff;
    const diskBlob = new Blob([onDisk as Uint8Array<ArrayBuffer>]);
    const { api: counting, counts } = countingApi(api);
    let commitsWhenAnnounced: number | null = null;
    let announced: readonly BlockHash[] = [];
    const blocks = new MemoryBlockStore();
    const result = await uploadFile({
      ns: created.namespaceId,
      path: parseFilePath('later.bin'),
      mtime: 1_700_000_000_000,
      stream: new Blob([read as Uint8Array<ArrayBuffer>]).stream(),
      bodyOf: (offset, length) => diskBlob.slice(offset, offset + length),
      api: counting,
      blocks,
      sha256: nodeSha256,
      keepLater: (hashes) => {
        announced = hashes;
        commitsWhenAnnounced = counts.commits;
      },
    });
    // Announced before the commit, with every block; nothing written locally on the way.
    expect(commitsWhenAnnounced).toBe(0);
    expect(announced).toEqual(result.blocks);
    expect((await blocks.hasBlocks(result.blocks)).size).toBe(0);
    // The server holds what was read and hashed, block 1 included.
    expect(await api.missingBlocks(result.blocks)).toEqual([]);
    for (let index = 0; index < result.blocks.length; index++) {
      const expected = read.subarray(index * MAX_BLOCK_SIZE, (index + 1) * MAX_BLOCK_SIZE);
      expect(Buffer.compare(await api.getBlock(created.namespaceId, result.blocks[index]), expected)).toBe(0);
    }
    expect(result.slices.map((slice) => slice.offset)).toEqual([0, 1, 2, 3].map((index) => index * MAX_BLOCK_SIZE));

    // Kept afterwards from the changed file: block 1 no longer matches its hash, so it is not stored.
    const stored = await keepFromSource(result.slices, readBlob(diskBlob), blocks, nodeSha256);
    const expectedKept = result.blocks.filter((_, index) => index !== 1);
    expect(new Set(stored)).toEqual(new Set(expectedKept));
    expect(await blocks.getBlock(result.blocks[1])).toBeNull();
    for (const hash of expectedKept) expect(hashOf((await blocks.getBlock(hash))!)).toBe(hash);
  });

  it('send a new file unread for the server to name its blocks: no question, no read, names checked when kept', async () => {
    const created = await new ServerApi(server.url).createWorkspace('unread upload');
    const api = new ServerApi(server.url, created.token);
    const bytes = new Uint8Array(randomBytes(3 * MAX_BLOCK_SIZE + 4321));
    const source = new Blob([bytes as Uint8Array<ArrayBuffer>]);
    const { api: counting, counts } = countingApi(api, { unnamed: 'sent' });
    let pulled = false;
    const stream = new ReadableStream<Uint8Array>({
      pull() {
        pulled = true;
        throw new Error('an unread upload reads nothing of its stream');
      },
    }, { highWaterMark: 0 });
    const blocks = new MemoryBlockStore();
    let announced: readonly BlockHash[] = [];
    const result = await uploadFile({
      ns: created.namespaceId,
      path: parseFilePath('unread.bin'),
      mtime: 1_700_000_000_000,
      stream,
      bodyOf: (offset, length) => source.slice(offset, offset + length),
      unreadSize: source.size,
      api: counting,
      blocks,
      sha256: nodeSha256,
      parallel: 2,
      keepLater: (hashes) => {
        announced = hashes;
      },
    });
    expect(pulled).toBe(false);
    expect(counts).toEqual({ commits: 1, questions: 0, named: 0, unnamed: 4 });
    const expected = [0, 1, 2, 3].map((index) => hashOf(bytes.subarray(index * MAX_BLOCK_SIZE, (index + 1) * MAX_BLOCK_SIZE)));
    expect(result.blocks).toEqual(expected);
    expect(announced).toEqual(expected);
    expect(result.size).toBe(bytes.length);
    expect(result.slices.map(({ offset, length }) => [offset, length])).toEqual([[0, MAX_BLOCK_SIZE], [MAX_BLOCK_SIZE, MAX_BLOCK_SIZE], [2 * MAX_BLOCK_SIZE, MAX_BLOCK_SIZE], [3 * MAX_BLOCK_SIZE, 4321]]);
    for (const [index, hash] of expected.entries()) {
      expect(Buffer.compare(await api.getBlock(created.namespaceId, hash), bytes.subarray(index * MAX_BLOCK_SIZE, (index + 1) * MAX_BLOCK_SIZE))).toBe(0);
    }
    // Kept afterwards from a source that changed in block 2: only the names that still match are stored.
    const onDisk = bytes.slice();
    onDisk[2 * MAX_BLOCK_SIZE + 1] ^= 0xff;
    const stored = await keepFromSource(result.slices, readBlob(new Blob([onDisk as Uint8Array<ArrayBuffer>])), blocks, nodeSha256);
    expect(new Set(stored)).toEqual(new Set([expected[0], expected[1], expected[3]]));
  });

  it('read and hash as before where the server cannot name blocks', async () => {
    const created = await new ServerApi(server.url).createWorkspace('unread refused');
    const api = new ServerApi(server.url, created.token);
    const bytes = new Uint8Array(randomBytes(2 * MAX_BLOCK_SIZE + 5));
    const source = new Blob([bytes as Uint8Array<ArrayBuffer>]);
    const { api: counting, counts } = countingApi(api, { unnamed: 'refused' });
    const result = await uploadFile({
      ns: created.namespaceId,
      path: parseFilePath('refused.bin'),
      mtime: 1_700_000_000_000,
      stream: source.stream(),
      bodyOf: (offset, length) => source.slice(offset, offset + length),
      unreadSize: source.size,
      api: counting,
      blocks: new MemoryBlockStore(),
      sha256: nodeSha256,
      keepLater: () => {},
    });
    // One wave (all three blocks at once), then by name: every block asked about and sent.
    expect(counts.unnamed).toBe(3);
    expect(counts.named).toBe(3);
    expect(counts.questions).toBeGreaterThan(0);
    expect(result.blocks).toEqual([0, 1, 2].map((index) => hashOf(bytes.subarray(index * MAX_BLOCK_SIZE, (index + 1) * MAX_BLOCK_SIZE))));
    expect(await api.missingBlocks(result.blocks)).toEqual([]);
  });

  it('falls back to sending by name when the server stops naming blocks part-way, sending only what it lacks', async () => {
    const created = await new ServerApi(server.url).createWorkspace('unread refused part-way');
    const api = new ServerApi(server.url, created.token);
    const bytes = new Uint8Array(randomBytes(6 * MAX_BLOCK_SIZE + 5));
    const source = new Blob([bytes as Uint8Array<ArrayBuffer>]);
    const { api: counting, counts } = countingApi(api, { unnamed: { namedFirst: 2 } });
    const result = await uploadFile({
      ns: created.namespaceId,
      path: parseFilePath('part-way.bin'),
      mtime: 1_700_000_000_000,
      stream: source.stream(),
      bodyOf: (offset, length) => source.slice(offset, offset + length),
      unreadSize: source.size,
      api: counting,
      blocks: new MemoryBlockStore(),
      sha256: nodeSha256,
      keepLater: () => {},
      parallel: 2,
    });
    const expected = Array.from({ length: 7 }, (_, index) => hashOf(bytes.subarray(index * MAX_BLOCK_SIZE, (index + 1) * MAX_BLOCK_SIZE)));
    expect(result.blocks).toEqual(expected);
    // The two named blocks are on the server: only the other five go again, by name. The
    // refusal stops both senders (the other may have had one more request out).
    expect(counts.unnamed).toBeGreaterThanOrEqual(3);
    expect(counts.unnamed).toBeLessThanOrEqual(4);
    expect(counts.named).toBe(5);
    expect(await api.missingBlocks(result.blocks)).toEqual([]);
    expect(result.size).toBe(bytes.length);
  });

  it('answers the server\'s need list from the source', async () => {
    const created = await new ServerApi(server.url).createWorkspace('keep later need');
    const api = new ServerApi(server.url, created.token);
    const bytes = new Uint8Array(randomBytes(2 * MAX_BLOCK_SIZE + 10));
    const source = new Blob([bytes as Uint8Array<ArrayBuffer>]);
    // Told nothing is missing, the upload sends nothing: the commit's 409 names every block.
    const { api: counting, counts } = countingApi(api, { tellNothingMissing: true });
    const blocks = new MemoryBlockStore();
    const result = await uploadFile({
      ns: created.namespaceId,
      path: parseFilePath('need.bin'),
      mtime: 1_700_000_000_000,
      stream: source.stream(),
      bodyOf: (offset, length) => source.slice(offset, offset + length),
      api: counting,
      blocks,
      sha256: nodeSha256,
      keepLater: () => {},
    });
    expect(counts.commits).toBe(2);
    expect(result.sjid).toBeGreaterThan(0);
    expect(await api.missingBlocks(result.blocks)).toEqual([]);
    expect((await blocks.hasBlocks(result.blocks)).size).toBe(0);
  });

  it('lets the engine wait for the local keep, fetching only the blocks it could not store', async () => {
    const created = await new ServerApi(server.url).createWorkspace('keep later engine');
    const api = new ServerApi(server.url, created.token);
    const blocks = new MemoryBlockStore();
    const sync = new NamespaceSync({
      ns: created.namespaceId,
      journal: api.journal(created.namespaceId),
      state: new MemoryStateStore(),
      blocks,
      sha256: nodeSha256,
      sources: () => [new ServerBlockSource(api)],
      longPollSeconds: 2,
    });
    await sync.start();
    try {
      const read = new Uint8Array(randomBytes(3 * MAX_BLOCK_SIZE));
      const onDisk = read.slice();
      onDisk[2 * MAX_BLOCK_SIZE] ^= 0xff;
      const diskBlob = new Blob([onDisk as Uint8Array<ArrayBuffer>]);
      const result = await uploadFile({
        ns: created.namespaceId,
        path: parseFilePath('mine.bin'),
        mtime: 1_700_000_000_000,
        stream: new Blob([read as Uint8Array<ArrayBuffer>]).stream(),
        bodyOf: (offset, length) => diskBlob.slice(offset, offset + length),
        api,
        blocks,
        sha256: nodeSha256,
        keepLater: (hashes) => sync.storingLocally(hashes),
      });
      // The engine learns of the file and wants its blocks, but waits for this device's keep.
      await until(() => sync.file('mine.bin') !== undefined, SYNC_TIMEOUT_MS);
      const stored = await keepFromSource(result.slices, readBlob(diskBlob), blocks, nodeSha256);
      expect(stored.length).toBe(2);
      await sync.localStoreEnded(result.blocks, stored);
      await until(() => sync.fileProgress(parseFilePath('mine.bin'))?.status === 'synced', SYNC_TIMEOUT_MS);
      // Only the block the keep could not store (the source changed) came from the server.
      expect(sync.snapshot().bytesFromServer).toBe(MAX_BLOCK_SIZE);
      expect(hashOf((await blocks.getBlock(result.blocks[2]))!)).toBe(result.blocks[2]);
    } finally {
      await sync.stop();
    }
  });
});
