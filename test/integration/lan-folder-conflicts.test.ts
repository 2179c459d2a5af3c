import { mkdir, mkdtemp, readdir, readFile, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NamespaceSync } from '../../src/engine/namespace-sync.ts';
import { ServerApi } from '../../src/engine/server-api.ts';
import { ServerBlockSource } from '../../src/engine/server-source.ts';
import { LocalChanges } from '../../src/lan/folder/local-changes.ts';
import { FolderMaterialiser } from '../../src/lan/folder/materialiser.ts';
import { DiskBlockStore } from '../../src/lan/store/disk-block-store.ts';
import { nodeSha256 } from '../../src/lan/store/node-sha256.ts';
import { SqliteStateStore } from '../../src/lan/store/sqlite-state-store.ts';
import { parseFilePath, type NamespaceId } from '../../src/protocol/index.ts';
import { api, createWorkspace, head, putBlock, sha256, startHarness, type Harness, type Member } from './helpers.ts';
import { until } from '../support/until.ts';

/**
 * The native peer's folder parts (scanner, materialiser, on-disk stores, the engine) against
 * a real server, with the engine stopped between reads so that its view of the journal is
 * stale on purpose: the case where a remote version lands after the engine last read the
 * journal and before the scanner commits a local edit. Only the server's conditional commit
 * can catch it; both versions must survive.
 */

const NOW = new Date(2026, 11, 6, 9, 30, 15);
let h: Harness;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  h = await startHarness();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  await h.stop();
});

interface Peer {
  ns: NamespaceId;
  dir: string;
  log: string[];
  api: ServerApi;
  state: SqliteStateStore;
  blocks: DiskBlockStore;
  engine: NamespaceSync | null;
  scanner: LocalChanges;
  materialiser: FolderMaterialiser;
}

async function nativePeer(member: Member): Promise<Peer> {
  const root = await mkdtemp(join(tmpdir(), 'nearsync-lan-conflict-'));
  const dir = join(root, 'folder');
  const state = new SqliteStateStore(join(root, 'state.db'));
  const blocks = await DiskBlockStore.open(join(root, 'blocks'));
  cleanups.push(async () => {
    await peer.engine?.stop();
    state.close();
    await rm(root, { recursive: true, force: true });
  });
  const log: string[] = [];
  const apiClient = new ServerApi(h.url, member.token, undefined, 'desk-7');
  const peer: Peer = {
    ns: member.ns,
    dir,
    log,
    api: apiClient,
    state,
    blocks,
    engine: null,
    scanner: new LocalChanges({
      ns: member.ns,
      root: dir,
      api: apiClient,
      state,
      blocks,
      liveFile: (path) => peer.engine?.file(path),
      cursor: () => peer.engine?.cursor ?? 0,
      log: (line) => log.push(line),
    }),
    materialiser: new FolderMaterialiser({ root: dir, state, blocks, log: (line) => log.push(line), host: 'desk-7', now: () => NOW }),
  };
  await mkdir(dir);
  return peer;
}

/** Reads the journal to the server's head, fetches every block, writes the folder, and stops the engine (its view then goes stale). */
async function catchUpAndWrite(peer: Peer, member: Member): Promise<void> {
  await peer.engine?.stop();
  const engine = new NamespaceSync({
    ns: peer.ns,
    journal: peer.api.journal(peer.ns),
    state: peer.state,
    blocks: peer.blocks,
    sha256: nodeSha256,
    sources: () => [new ServerBlockSource(peer.api)],
    longPollSeconds: 1,
  });
  peer.engine = engine;
  await engine.start();
  const target = await head(h.url, member);
  await until(() => engine.snapshot().syncedCursor >= target, 15_000, `engine synced to ${target}`);
  const snapshot = engine.snapshot();
  await peer.materialiser.apply({
    cursor: snapshot.cursor,
    files: snapshot.files.map((progress) => ({ file: progress.file, complete: progress.status === 'synced' })),
  });
  await engine.stop();
}

/** Another member's client commits `text` at `path`, replacing `parent`. */
async function remoteCommit(member: Member, path: string, text: string, parent: number, deleted = false): Promise<number> {
  const block = { bytes: Buffer.from(text), hash: sha256(Buffer.from(text)) };
  if (!deleted) await putBlock(h.url, member.token, block);
  const res = await api(h.url, 'POST', `/api/v1/ns/${member.ns}/commit`, {
    token: member.token,
    json: deleted
      ? { path, size: 0, mtime: 1, blocks: [], deleted: true, parent, device: 'Ann laptop' }
      : { path, size: block.bytes.length, mtime: 1_700_000_000_000, blocks: [block.hash], parent, device: 'Ann laptop' },
  });
  if (res.status !== 200) throw new Error(`remote commit: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.sjid;
}

/** A local edit the scanner will notice (a different size or mtime than the daemon wrote). */
async function editLocally(peer: Peer, name: string, text: string): Promise<void> {
  await writeFile(join(peer.dir, name), text);
  const later = new Date(Date.now() + 5_000);
  await utimes(join(peer.dir, name), later, later);
}

async function livePaths(member: Member): Promise<Map<string, number>> {
  const res = await api(h.url, 'GET', `/api/v1/ns/${member.ns}/journal?limit=1000`, { token: member.token });
  const live = new Map<string, number>();
  for (const entry of res.body.entries) {
    if (entry.deleted) live.delete(entry.path);
    else live.set(entry.path, entry.sjid);
  }
  return live;
}

describe('native peer: conditional commits against a stale view of the journal', () => {
  it('a local edit racing a remote version: nothing is overwritten, and the local version becomes a conflicted copy', async () => {
    const member = await createWorkspace(h.url, 'native conflicts');
    await remoteCommit(member, 'plan.txt', 'base\n', 0);
    const peer = await nativePeer(member);
    await catchUpAndWrite(peer, member);
    expect(await readFile(join(peer.dir, 'plan.txt'), 'utf8')).toBe('base\n');

    // The remote version lands after the engine last read; then the local edit is scanned.
    expect(await remoteCommit(member, 'plan.txt', 'edited by Ann\n', 1)).toBe(2);
    await editLocally(peer, 'plan.txt', 'edited at the desk\n');
    await peer.scanner.scan();
    expect(await head(h.url, member)).toBe(2);
    expect(peer.log.join('\n')).toMatch(/conflict on plan\.txt: the server has a newer version \(entry 2 by Ann laptop\)/);

    // Once the engine reads the remote version, the materialiser keeps the local one aside and the scanner uploads it.
    await catchUpAndWrite(peer, member);
    const copy = 'plan (conflicted copy 2026-12-06 093015 desk-7).txt';
    expect((await readdir(peer.dir)).sort()).toEqual([copy, 'plan.txt']);
    expect(await readFile(join(peer.dir, 'plan.txt'), 'utf8')).toBe('edited by Ann\n');
    expect(await readFile(join(peer.dir, copy), 'utf8')).toBe('edited at the desk\n');
    await peer.scanner.scan();
    expect([...(await livePaths(member)).keys()].sort()).toEqual([copy, 'plan.txt']);
    const history = await peer.api.history(member.ns, parseFilePath(copy));
    expect(history.versions.map((v) => [v.device, v.size])).toEqual([['desk-7', 'edited at the desk\n'.length]]);
  });

  it('a local save landing while the materialiser writes a remote version is kept aside, not overwritten', async () => {
    const member = await createWorkspace(h.url, 'native mid-write save');
    await remoteCommit(member, 'plan.txt', 'base\n', 0);
    const peer = await nativePeer(member);
    await catchUpAndWrite(peer, member);
    await remoteCommit(member, 'plan.txt', 'edited by Ann\n', 1);

    // A program saves the file while the remote version's blocks are being written out.
    let saved = false;
    const savingMidWrite = {
      getBlock: async (hash: Parameters<DiskBlockStore['getBlock']>[0]) => {
        if (!saved) {
          saved = true;
          await editLocally(peer, 'plan.txt', 'saved at the desk mid-write\n');
        }
        return peer.blocks.getBlock(hash);
      },
    } as unknown as DiskBlockStore;
    peer.materialiser = new FolderMaterialiser({ root: peer.dir, state: peer.state, blocks: savingMidWrite, log: (line) => peer.log.push(line), host: 'desk-7', now: () => NOW });
    await catchUpAndWrite(peer, member);
    expect(saved).toBe(true);
    const copy = 'plan (conflicted copy 2026-12-06 093015 desk-7).txt';
    expect((await readdir(peer.dir)).sort()).toEqual([copy, 'plan.txt']);
    expect(await readFile(join(peer.dir, 'plan.txt'), 'utf8')).toBe('edited by Ann\n');
    expect(await readFile(join(peer.dir, copy), 'utf8')).toBe('saved at the desk mid-write\n');
    await peer.scanner.scan();
    expect([...(await livePaths(member)).keys()].sort()).toEqual([copy, 'plan.txt']);
  });

  it('a new local file meeting a remote file of the same name created meanwhile: parent 0 keeps both', async () => {
    const member = await createWorkspace(h.url, 'native new paths');
    const peer = await nativePeer(member);
    await catchUpAndWrite(peer, member);
    await remoteCommit(member, 'notes.md', 'remote notes\n', 0);
    await editLocally(peer, 'notes.md', 'local notes\n');
    await peer.scanner.scan();
    expect(await head(h.url, member)).toBe(1);

    await catchUpAndWrite(peer, member);
    await peer.scanner.scan();
    const live = [...(await livePaths(member)).keys()].sort();
    expect(live).toEqual(['notes (conflicted copy 2026-12-06 093015 desk-7).md', 'notes.md']);
    expect(await readFile(join(peer.dir, 'notes.md'), 'utf8')).toBe('remote notes\n');
  });

  it('a local delete of a version replaced remotely meanwhile deletes nothing; the newer version comes back', async () => {
    const member = await createWorkspace(h.url, 'native deletes');
    await remoteCommit(member, 'keep.txt', 'v1\n', 0);
    const peer = await nativePeer(member);
    await catchUpAndWrite(peer, member);
    await remoteCommit(member, 'keep.txt', 'v2\n', 1);
    await unlink(join(peer.dir, 'keep.txt'));
    await peer.scanner.scan();
    expect(peer.log.join('\n')).toMatch(/not deleting keep\.txt on the server: the server has a newer version \(entry 2/);
    expect([...(await livePaths(member)).entries()]).toEqual([['keep.txt', 2]]);

    await catchUpAndWrite(peer, member);
    expect(await readFile(join(peer.dir, 'keep.txt'), 'utf8')).toBe('v2\n');

    // A local delete of a path deleted remotely meanwhile is simply done.
    await remoteCommit(member, 'keep.txt', '', 2, true);
    await unlink(join(peer.dir, 'keep.txt'));
    await peer.scanner.scan();
    expect(await head(h.url, member)).toBe(3);
    expect(peer.state.folderRecord(parseFilePath('keep.txt'))).toBeUndefined();
  });

  it('a local edit of a file deleted remotely meanwhile: nothing is committed over the deletion, then the edit comes back as a new file', async () => {
    const member = await createWorkspace(h.url, 'native edit vs delete');
    await remoteCommit(member, 'draft.txt', 'draft\n', 0);
    const peer = await nativePeer(member);
    await catchUpAndWrite(peer, member);
    await remoteCommit(member, 'draft.txt', '', 1, true);
    await editLocally(peer, 'draft.txt', 'kept working on it\n');
    await peer.scanner.scan();
    expect(peer.log.join('\n')).toMatch(/conflict on draft\.txt: it was deleted on the server; .* uploaded again as a new file/);
    expect(await head(h.url, member)).toBe(2);

    await catchUpAndWrite(peer, member);
    await peer.scanner.scan();
    expect([...(await livePaths(member)).entries()]).toEqual([['draft.txt', 3]]);
    expect(await readFile(join(peer.dir, 'draft.txt'), 'utf8')).toBe('kept working on it\n');
  });
});
