import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import { MAX_BLOCK_SIZE, type BlockHash } from '../../src/protocol/index.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import { UploadQueue } from '../../workers/upload-queue.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';

/**
 * The page's upload queue with the local keep after the upload (`keepAfterUpload`), against
 * the real server: an upload is done once the server has it; its blocks are then kept from
 * the File, except in a folder this device keeps online only, and the engine is told what
 * was about to be kept and what was.
 */

let server: RunningServer;
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'nearsync-queue-keep-'));
  server = await startServer({ host: '127.0.0.1', port: 0, dataDir, staticDir: null, logger: silentLogger });
});
afterAll(async () => {
  await server?.close();
  await rm(dataDir, { recursive: true, force: true });
});

const blockHashes = (bytes: Uint8Array) => {
  const hashes: BlockHash[] = [];
  for (let offset = 0; offset < bytes.length; offset += MAX_BLOCK_SIZE) hashes.push(hashOf(bytes.subarray(offset, offset + MAX_BLOCK_SIZE)));
  return hashes;
};

describe('upload queue keeping local copies after the upload', () => {
  it('keeps a kept folder\'s upload from the File, and nothing of an online-only folder\'s', async () => {
    const created = await new ServerApi(server.url).createWorkspace('queue keep');
    const api = new ServerApi(server.url, created.token);
    const blocks = Object.assign(new MemoryBlockStore(), { getBlob: async () => undefined });
    const begun: BlockHash[][] = [];
    const ended: { hashes: readonly BlockHash[]; stored: readonly BlockHash[] }[] = [];
    const queue = new UploadQueue({
      ns: created.namespaceId,
      api,
      device: 'test device',
      knownSjids: async () => new Map(),
      blocks,
      sha256: nodeSha256,
      onChange: () => {},
      onCommitted: () => {},
      keepAfterUpload: () => ({
        keeps: async (path) => !path.startsWith('cloud/'),
        begin: (hashes) => void begun.push([...hashes]),
        end: (hashes, stored) => void ended.push({ hashes, stored }),
      }),
    });
    const here = new Uint8Array(randomBytes(2 * MAX_BLOCK_SIZE + 99));
    const cloud = new Uint8Array(randomBytes(MAX_BLOCK_SIZE + 5));
    queue.add([
      { file: new File([here as Uint8Array<ArrayBuffer>], 'here.bin'), path: 'here/here.bin' },
      { file: new File([cloud as Uint8Array<ArrayBuffer>], 'cloud.bin'), path: 'cloud/cloud.bin' },
    ]);
    await until(() => ended.length === 2, 30_000, 'both keeps to end');

    expect(queue.list().map((view) => view.state)).toEqual(['done', 'done']);
    const hereHashes = blockHashes(here);
    const cloudHashes = blockHashes(cloud);
    // Both announced before their commits, and both on the server.
    expect(begun.map((hashes) => hashes.length).sort()).toEqual([2, 3]);
    expect(await api.missingBlocks([...hereHashes, ...cloudHashes])).toEqual([]);
    // The kept folder's blocks are here, byte for byte; the online-only folder's are not.
    const endedHere = ended.find((end) => end.hashes.length === 3)!;
    const endedCloud = ended.find((end) => end.hashes.length === 2)!;
    expect(new Set(endedHere.stored)).toEqual(new Set(hereHashes));
    expect(endedCloud.stored).toEqual([]);
    for (const hash of hereHashes) expect(hashOf((await blocks.getBlock(hash))!)).toBe(hash);
    expect((await blocks.hasBlocks(cloudHashes)).size).toBe(0);
  });

  it('keeps while uploading where it is given no hooks (a tab that does not sync the workspace)', async () => {
    const created = await new ServerApi(server.url).createWorkspace('queue keep follower');
    const api = new ServerApi(server.url, created.token);
    const blocks = Object.assign(new MemoryBlockStore(), { getBlob: async () => undefined });
    let asked = 0;
    const queue = new UploadQueue({
      ns: created.namespaceId,
      api,
      device: 'test device',
      knownSjids: async () => new Map(),
      blocks,
      sha256: nodeSha256,
      onChange: () => {},
      onCommitted: () => {},
      keepAfterUpload: () => {
        asked += 1;
        return null;
      },
    });
    const bytes = new Uint8Array(randomBytes(MAX_BLOCK_SIZE + 321));
    queue.add([{ file: new File([bytes as Uint8Array<ArrayBuffer>], 'f.bin'), path: 'f.bin' }]);
    await until(() => queue.list()[0]?.state === 'done', 30_000, 'the upload');
    expect(asked).toBe(1);
    // Stored before the upload counted as done: the syncing tab finds the blocks here.
    expect((await blocks.hasBlocks(blockHashes(bytes))).size).toBe(2);
  });
});
