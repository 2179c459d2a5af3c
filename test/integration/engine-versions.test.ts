import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitWithBlocks } from '../../src/engine/commit-with-blocks.ts';
import { restoreVersion } from '../../src/engine/restore-version.ts';
import { ServerApi } from '../../src/engine/server-api.ts';
import { fetchVersionBlocks } from '../../src/engine/version-blocks.ts';
import { parseFilePath, type BlockHash } from '../../src/protocol/index.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';

/**
 * What the browser's Versions and Recently deleted panels do, through the engine against the
 * real server: an old version's blocks come from the server into a device that never had
 * them, and a deleted file's last version is committed again.
 */

let server: RunningServer;
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'nearsync-versions-'));
  server = await startServer({ host: '127.0.0.1', port: 0, dataDir, staticDir: null, logger: silentLogger });
});
afterAll(async () => {
  await server?.close();
  await rm(dataDir, { recursive: true, force: true });
});

describe('versions through the engine', () => {
  it('fetches an old version a device never had, restores a deleted file, and lists it no more', async () => {
    const created = await new ServerApi(server.url).createWorkspace('versions');
    const ns = created.namespaceId;
    const writer = new ServerApi(server.url, created.token, undefined, 'Ann laptop');
    const writerStore = new MemoryBlockStore();
    const path = parseFilePath('plan.txt');
    const blocksOf = async (...parts: string[]) => {
      const hashes: BlockHash[] = [];
      for (const part of parts) {
        const bytes = new TextEncoder().encode(part);
        const hash = hashOf(bytes);
        await writerStore.putBlock(hash, bytes);
        hashes.push(hash);
      }
      return hashes;
    };
    const v1 = await blocksOf('first part, ', 'second part');
    await commitWithBlocks(ns, { path, size: 23, mtime: 1, blocks: v1, deleted: false, parent: 0 }, writer, writerStore);
    await commitWithBlocks(ns, { path, size: 3, mtime: 2, blocks: await blocksOf('new'), deleted: false, parent: 1 }, writer, writerStore);

    const reader = new ServerApi(server.url, created.token, undefined, 'Bob desk');
    const readerStore = new MemoryBlockStore();
    const [, first] = (await reader.history(ns, path)).versions;
    await fetchVersionBlocks(ns, first, reader, readerStore, nodeSha256);
    expect([...readerStore.blocks.keys()].sort()).toEqual([...v1].sort());
    const puts = readerStore.puts;
    await fetchVersionBlocks(ns, first, reader, readerStore, nodeSha256);
    expect(readerStore.puts).toBe(puts);

    await commitWithBlocks(ns, { path, size: 0, mtime: 3, blocks: [], deleted: true, parent: 2 }, writer, writerStore);
    const { files } = await reader.deletedFiles(ns);
    expect(files).toEqual([{ path, sjid: 3, deletedAt: expect.any(Number), device: 'Ann laptop', lastSjid: 2, size: 3, mtime: 2 }]);
    const kept = await restoreVersion(ns, path, files[0].lastSjid, reader, readerStore, { device: 'Bob desk', parentOf: async () => 0 });
    expect(kept).toMatchObject({ path, conflicted: false });
    expect(await reader.deletedFiles(ns)).toEqual({ files: [], more: false });
    const [restored] = (await reader.history(ns, path, { limit: 1 })).versions;
    expect(restored).toMatchObject({ sjid: 4, size: 3, deleted: false, device: 'Bob desk' });
  });
});
