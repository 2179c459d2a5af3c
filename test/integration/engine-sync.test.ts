import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NamespaceSync } from '../../src/engine/namespace-sync.ts';
import { ServerApi } from '../../src/engine/server-api.ts';
import { ServerBlockSource } from '../../src/engine/server-source.ts';
import { uploadFile } from '../../src/engine/uploader.ts';
import { MAX_BLOCK_SIZE, parseFilePath, type FilePath, type NamespaceId } from '../../src/protocol/index.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import { MemoryBlockStore, MemoryStateStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';

/** The engine as the LAN daemon will run it (memory adapters), against the real server. */

/** Generous: CI machines are shared and slow at times. */
const SYNC_TIMEOUT_MS = 15_000;

let server: RunningServer;
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'nearsync-engine-'));
  server = await startServer({ host: '127.0.0.1', port: 0, dataDir, staticDir: null, logger: silentLogger });
});
afterAll(async () => {
  await server?.close();
  await rm(dataDir, { recursive: true, force: true });
});

interface Device {
  api: ServerApi;
  blocks: MemoryBlockStore;
  state: MemoryStateStore;
}

async function workspace(): Promise<{ ns: NamespaceId; a: Device; b: Device }> {
  const created = await new ServerApi(server.url).createWorkspace('engine test');
  const invite = new URL(created.inviteUrl).hash.replace('#invite=', '');
  const joined = await new ServerApi(server.url).join(invite);
  const device = (token: string): Device => ({
    api: new ServerApi(server.url, token),
    blocks: new MemoryBlockStore(),
    state: new MemoryStateStore(),
  });
  const a = device(created.token);
  const b = device(joined.token);
  // A device knows a workspace once it joined; the state store starts at cursor 0.
  return { ns: created.namespaceId, a, b };
}

async function upload(device: Device, ns: NamespaceId, path: string, bytes: Uint8Array) {
  return uploadFile({
    ns,
    path: parseFilePath(path),
    mtime: 1_700_000_000_000,
    stream: new Blob([bytes as Uint8Array<ArrayBuffer>]).stream(),
    api: device.api,
    blocks: device.blocks,
    sha256: nodeSha256,
  });
}

function syncOf(device: Device, ns: NamespaceId, onChange?: () => void): NamespaceSync {
  return new NamespaceSync({
    ns,
    journal: device.api.journal(ns),
    state: device.state,
    blocks: device.blocks,
    sha256: nodeSha256,
    sources: () => [new ServerBlockSource(device.api)],
    longPollSeconds: 2,
    onChange,
  });
}


async function assemble(device: Device, sync: NamespaceSync, path: string): Promise<Uint8Array> {
  const file = sync.file(path);
  if (!file) throw new Error(`${path} missing`);
  const parts: Uint8Array[] = [];
  for (const hash of file.blocks) {
    const bytes = await device.blocks.getBlock(hash);
    if (!bytes) throw new Error(`block of ${path} missing`);
    parts.push(bytes);
  }
  return new Uint8Array(Buffer.concat(parts));
}

describe('engine against the real server', () => {
  it('uploads from one device and syncs byte-identical files to another, then follows renames and deletes', async () => {
    const { ns, a, b } = await workspace();
    const big = randomBytes(2 * MAX_BLOCK_SIZE + 12_345);
    const small = new TextEncoder().encode('hello, team\n');
    const uploaded = await upload(a, ns, 'docs/big.bin', big);
    expect(uploaded.blocks.length).toBe(3);
    await upload(a, ns, 'small.txt', small);
    await upload(a, ns, 'empty', new Uint8Array(0));

    const start = server.metrics().blockRequestsServed;
    const sync = syncOf(b, ns);
    await sync.start();
    try {
      await until(() => {
        const snap = sync.snapshot();
        return snap.files.length === 3 && snap.files.every((f) => f.status === 'synced') && snap.syncedCursor === 3;
      }, SYNC_TIMEOUT_MS);
      expect(hashOf(await assemble(b, sync, 'docs/big.bin'))).toBe(hashOf(big));
      expect(hashOf(await assemble(b, sync, 'small.txt'))).toBe(hashOf(small));
      expect(sync.file('empty')?.size).toBe(0);
      expect(sync.snapshot().bytesFromServer).toBe(big.length + small.length);

      // The server counts a request when its response has flushed, which can trail the
      // client's read by a moment: wait for the four distinct blocks to be counted.
      await until(() => server.metrics().blockRequestsServed - start >= 4, SYNC_TIMEOUT_MS);
      // Rename = new path with the same blocks, then delete the old path; B fetches nothing new.
      const file = sync.file('small.txt')!;
      await a.api.commit(ns, { ...file, path: 'renamed.txt' as FilePath, deleted: false });
      await a.api.commit(ns, { path: 'small.txt' as FilePath, size: 0, mtime: 1, blocks: [], deleted: true });
      await until(() => sync.file('renamed.txt') !== undefined && sync.file('small.txt') === undefined, SYNC_TIMEOUT_MS);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(server.metrics().blockRequestsServed - start).toBe(4);
      expect((await b.state.load(ns)).files.map((f) => f.path).sort()).toEqual(['docs/big.bin', 'empty', 'renamed.txt']);
    } finally {
      await sync.stop();
    }
  });

  it('resumes after a stop without fetching a stored block twice', async () => {
    const { ns, a, b } = await workspace();
    const big = randomBytes(8 * MAX_BLOCK_SIZE);
    await upload(a, ns, 'eight-blocks.bin', big);

    const start = server.metrics().blockRequestsServed;
    const first = syncOf(b, ns);
    await first.start();
    await until(() => b.blocks.blocks.size >= 2, SYNC_TIMEOUT_MS);
    await first.stop();
    const storedAtStop = b.blocks.blocks.size;
    expect(storedAtStop).toBeLessThan(8);

    const second = syncOf(b, ns);
    await second.start();
    try {
      await until(() => second.snapshot().syncedCursor === 1, SYNC_TIMEOUT_MS);
      expect(hashOf(await assemble(b, second, 'eight-blocks.bin'))).toBe(hashOf(big));
      // Requests cut short by the stop may repeat; stored blocks never do.
      const served = server.metrics().blockRequestsServed - start;
      expect(served).toBeLessThanOrEqual(8 + (8 - storedAtStop));
      expect(b.blocks.puts).toBe(8);
    } finally {
      await second.stop();
    }
  });
});
