/// <reference lib="webworker" />
import * as Comlink from 'comlink';
import { ServerApi } from '../src/engine/server-api.ts';
import { DEFAULT_PEER_LABEL, describeError, parseBlockHash, inviteFromLink, parseBridgeReadOut, parseCursor, parseDeviceLabel, parseFilePath, parseNamespaceId, REQUEST_FROM_ALIGNMENT, type BlockHash, type BridgeReadOut, type BridgeReadReply, type NamespaceId } from '../src/protocol/index.ts';
import { fetchVersionBlocks } from '../src/engine/version-blocks.ts';
import { sha256 } from './web-crypto.ts';
import { BlockFiles } from './block-files.ts';
import { blockBuffers } from './block-buffers.ts';
import { BlockWriter } from './block-writer.ts';
import { BlockCrcs } from './block-crcs.ts';
import { CacheBlocks } from './cache-blocks.ts';
import { holdWriterLock, writerIsGone } from './block-writer-lock.ts';
import { IdbBlockStore, IdbStateStore, WorkspaceRegistry, openNearsyncDb, type NearsyncDb } from './idb-store.ts';
import type { FolderQuery, JoinAnswer, OpenOptions, PeerAdvert, PeerTransport, SyncWorkerApi, UploadInput, UploadPart, WorkspaceView, ZipProgressView } from './sync-api.ts';
import type { ZipSource } from './zip-export.ts';
import { WorkspaceSession } from './workspace-session.ts';
import { serveFileRead } from './file-reads.ts';
import { expectedBlockSize } from '../src/engine/block-layout.ts';
import { fetchFromServerNow } from '../src/engine/server-fetch-now.ts';
import type { FileRecord, WantedBlock } from '../src/engine/types.ts';
import type { KeepMode } from '../src/engine/keep-policy.ts';
import { ZipJobs } from './zip-jobs.ts';
import { ZipBlocks } from './zip-blocks.ts';
import { FolderLinks, type LinkedWorkspace } from './folder-sync/folder-links.ts';

/**
 * The sync worker: owns IndexedDB, the tokens, the engine and every block byte. The UI
 * reaches it only through the comlink interface below.
 */

interface WorkerContext {
  base: string;
  /** This browser's label, sent with its commits. */
  device: string;
  db: NearsyncDb;
  registry: WorkspaceRegistry;
  blocks: IdbBlockStore;
  state: IdbStateStore;
}

let context: WorkerContext | null = null;
const sessions = new Map<NamespaceId, WorkspaceSession>();
/**
 * Sessions being created. *Why:* the page opens a workspace and resumes its folder sync at
 * once; two creations racing through sessionFor's awaits each made a session, and the one left
 * out of `sessions` kept the sync lock, so the other (the folder sync's) waited for it forever.
 */
const sessionsStarting = new Map<NamespaceId, Promise<WorkspaceSession>>();
const zips = new ZipJobs();
const folders = new FolderLinks();

/** What folder sync of `ns` needs: the open session's engine, uploads and blocks. */
async function linkedWorkspace(ns: NamespaceId): Promise<LinkedWorkspace> {
  const session = await sessionFor(ns);
  return { api: await apiFor(ns), blocks: ready().blocks, device: ready().device, engine: () => session.syncEngine() };
}

function ready(): WorkerContext {
  if (!context) throw new Error('the sync worker is not initialised');
  return context;
}

async function apiFor(ns: NamespaceId): Promise<ServerApi> {
  const { base, registry } = ready();
  const record = await registry.get(ns);
  if (!record) throw new Error('this workspace is not known on this device');
  return new ServerApi(base, record.token, undefined, ready().device);
}

async function sessionFor(ns: NamespaceId): Promise<WorkspaceSession> {
  const existing = sessions.get(ns);
  if (existing) return existing;
  let starting = sessionsStarting.get(ns);
  if (!starting) {
    starting = startSession(ns).finally(() => sessionsStarting.delete(ns));
    sessionsStarting.set(ns, starting);
  }
  return starting;
}

async function startSession(ns: NamespaceId): Promise<WorkspaceSession> {
  const { registry, blocks, state } = ready();
  const record = await registry.get(ns);
  if (!record) throw new Error('this workspace is not known on this device');
  const session = new WorkspaceSession({
    record,
    api: await apiFor(ns),
    blocks,
    state,
    device: ready().device,
    keep: { load: () => registry.keepSettings(ns), save: (settings) => registry.setKeepSettings(ns, settings) },
    evictBlocks: (hashes) => evictUnlessKept(ns, hashes),
  });
  sessions.set(ns, session);
  session.start();
  return session;
}

/** Background upkeep at start: temporary files of workers that died, blocks in the version 1 layout. */
async function tidyBlockStorage(blocks: IdbBlockStore, writerId: string): Promise<void> {
  try {
    await BlockFiles.removeStaleTemps(async (id) => id !== writerId && (await writerIsGone(id)));
    // One tab at a time; another that finds the lock taken leaves the work to it.
    await navigator.locks.request('nearsync:move-legacy-blocks', { ifAvailable: true }, async (lock) => {
      if (lock) await blocks.moveLegacyBlocks();
    });
  } catch (error) {
    console.warn(`nearsync: tidying block storage failed: ${describeError(error)}`);
  }
}

/** The page's label for this browser when it is a valid one, else `fallback` (the page is trusted, its storage less so). */
function deviceLabelOr(label: string | undefined, fallback: string): string {
  try {
    return label === undefined ? fallback : parseDeviceLabel(label);
  } catch {
    return fallback;
  }
}

const api: SyncWorkerApi = {
  async init(apiBase: string, device?: string) {
    if (context) return;
    const db = await openNearsyncDb();
    const writerId = crypto.randomUUID();
    await holdWriterLock(writerId);
    const files = await BlockFiles.open(writerId);
    const blocks = new IdbBlockStore(db, files, BlockWriter.start(writerId, blockBuffers), CacheBlocks.open(writerId), new BlockCrcs());
    blocks.routeToCache(isCacheOnlyBlock);
    context = {
      base: apiBase.replace(/\/+$/, ''),
      device: deviceLabelOr(device, DEFAULT_PEER_LABEL),
      db,
      registry: new WorkspaceRegistry(db, files, blocks),
      blocks,
      state: new IdbStateStore(db),
    };
    void tidyBlockStorage(blocks, writerId);
  },

  async listWorkspaces() {
    const records = await ready().registry.list();
    return records
      .sort((a, b) => a.addedAt - b.addedAt)
      .map(({ namespaceId, name }) => ({ namespaceId, name }));
  },

  async createWorkspace(name: string) {
    const { base, registry } = ready();
    const created = await new ServerApi(base).createWorkspace(name);
    await registry.remember({
      namespaceId: created.namespaceId,
      name: created.name,
      token: created.token,
      shareLink: created.inviteUrl,
    });
    return { namespaceId: created.namespaceId, shareLink: created.inviteUrl };
  },

  async joinWorkspace(invite: string) {
    const { base, registry } = ready();
    const joined = await new ServerApi(base).join(invite);
    const existing = await registry.get(joined.namespaceId);
    await registry.remember({
      namespaceId: joined.namespaceId,
      name: joined.name,
      // Keep the token this device already had: sessions in other tabs use it.
      token: existing?.token ?? joined.token,
      shareLink: `${base}/w/${joined.namespaceId}#invite=${invite}`,
    });
    return { namespaceId: joined.namespaceId, name: joined.name };
  },

  async shareLink(ns: NamespaceId) {
    const record = await ready().registry.get(parseNamespaceId(ns));
    return record?.shareLink ?? null;
  },

  async resetShareLink(ns: NamespaceId) {
    const id = parseNamespaceId(ns);
    const link = await (await apiFor(id)).rotateInvite(id);
    if (!inviteFromLink(link)) throw new Error('the server returned a share link without an invite');
    await ready().registry.setShareLink(id, link);
    return link;
  },

  async open(ns: NamespaceId, onView: (view: WorkspaceView) => void, options: OpenOptions = {}) {
    const session = await sessionFor(parseNamespaceId(ns));
    if (options.peers === false) session.withoutPeers();
    session.subscribe(onView);
  },

  async close(ns: NamespaceId) {
    await folders.stop(ns);
    // One still being created is closed too, not left holding the sync lock.
    await sessionsStarting.get(ns)?.catch(() => null);
    const session = sessions.get(ns);
    sessions.delete(ns);
    await session?.close();
  },

  async listFolder(ns: NamespaceId, query: FolderQuery) {
    const session = sessions.get(parseNamespaceId(ns));
    if (!session) throw new Error('this workspace is not open in this tab');
    return session.list(parseFolderQuery(query));
  },

  async upload(ns: NamespaceId, files: UploadInput[], part?: UploadPart) {
    (await sessionFor(parseNamespaceId(ns))).upload(files, part === undefined ? undefined : parseUploadPart(part));
  },

  async uploadFolders(ns: NamespaceId, folders: FileSystemDirectoryHandle[]) {
    const session = await sessionFor(parseNamespaceId(ns));
    if (!Array.isArray(folders) || !folders.every((folder) => folder instanceof FileSystemDirectoryHandle)) {
      throw new TypeError('uploadFolders takes folder handles');
    }
    session.uploadFolders(folders);
  },

  async rename(ns: NamespaceId, from: string, to: string) {
    await (await sessionFor(parseNamespaceId(ns))).rename(from, to);
  },

  async remove(ns: NamespaceId, path: string) {
    await (await sessionFor(parseNamespaceId(ns))).remove(path);
  },

  async history(ns: NamespaceId, path: string, before?: number) {
    const id = parseNamespaceId(ns);
    return (await apiFor(id)).history(id, parseFilePath(path), before === undefined ? {} : { before });
  },

  async restoreVersion(ns: NamespaceId, path: string, sjid: number) {
    return (await sessionFor(parseNamespaceId(ns))).restoreVersion(path, parseCursor(sjid, 'sjid'));
  },

  async fileBlob(ns: NamespaceId, path: string) {
    const { state, blocks } = ready();
    const namespaceId = parseNamespaceId(ns);
    const session = sessions.get(namespaceId);
    const filePath = parseFilePath(path, 'path');
    const file = session ? await session.fileRecord(filePath) : await state.file(namespaceId, filePath);
    if (!file) throw new Error(`${path} is not in this workspace`);
    // An online-only file (or one still syncing): its missing blocks first, through the priority fetch.
    const present = await blocks.hasBlocks(file.blocks);
    const missing = new Set(file.blocks.filter((hash) => !present.has(hash)));
    if (missing.size > 0) {
      const indexes = file.blocks.flatMap((hash, index) => (missing.delete(hash) ? [index] : []));
      await fetchNow(namespaceId, blockWants(namespaceId, file, indexes));
    }
    const blob = await composeBlob(blocks, file.blocks);
    if (!blob) throw new Error(`${path} is not fully synced yet`);
    return blob;
  },

  async versionBlob(ns: NamespaceId, path: string, sjid: number) {
    const { blocks } = ready();
    const id = parseNamespaceId(ns);
    const filePath = parseFilePath(path, 'path');
    const wanted = parseCursor(sjid, 'sjid');
    const server = await apiFor(id);
    // The one version with this sjid, if it is an entry of this path (history is validated).
    const version = (await server.history(id, filePath, { before: wanted + 1, limit: 1 })).versions[0];
    if (version === undefined || version.sjid !== wanted) throw new Error(`${path} has no version ${wanted} on the server`);
    await fetchVersionBlocks(id, version, server, blocks, sha256);
    const blob = await composeBlob(blocks, version.blocks);
    if (!blob) throw new Error(`a block of version ${wanted} of ${path} went missing from this device's storage`);
    if (blob.size !== version.size) {
      throw new Error(`version ${wanted} of ${path} should be ${version.size} bytes, but its blocks hold ${blob.size}`);
    }
    return blob;
  },

  async restoreDeleted(ns: NamespaceId, path: string, lastSjid: number) {
    return (await sessionFor(parseNamespaceId(ns))).restoreDeleted(path, parseCursor(lastSjid, 'lastSjid'));
  },

  async deletedFiles(ns: NamespaceId, before?: number) {
    const id = parseNamespaceId(ns);
    return (await apiFor(id)).deletedFiles(id, before === undefined ? {} : { before: parseCursor(before, 'before') });
  },

  async writeZip(ns: NamespaceId, folder: string, target: FileSystemFileHandle, jobId: string, onProgress: (progress: ZipProgressView) => void) {
    if (!(target instanceof FileSystemFileHandle)) throw new Error('a zip needs a file to write into');
    return zips.write(jobId, await zipSourceFor(ns, folder), target, onProgress);
  },

  async zipToDownload(ns: NamespaceId, folder: string, jobId: string, port: MessagePort, onProgress: (progress: ZipProgressView) => void) {
    if (!(port instanceof MessagePort)) throw new Error('a zip download needs a MessagePort to the service worker');
    return zips.toPort(jobId, await zipSourceFor(ns, folder), port, onProgress);
  },

  async cancelZip(jobId: string) {
    zips.cancel(jobId);
  },

  async relayCredentials(ns: NamespaceId) {
    const record = await ready().registry.get(parseNamespaceId(ns));
    if (!record) throw new Error('this workspace is not known on this device');
    return { tokens: [record.token] };
  },

  async attachTransport(ns: NamespaceId, transport: PeerTransport) {
    (await sessionFor(parseNamespaceId(ns))).attachTransport(transport);
  },

  async setAdverts(ns: NamespaceId, adverts: PeerAdvert[], lanBridge = false) {
    (await sessionFor(parseNamespaceId(ns))).setAdverts(adverts, lanBridge);
  },

  async attachPeerChannel(ns: NamespaceId, peer: { peerId: string; label: string }, channel: RTCDataChannel | MessagePort) {
    (await sessionFor(parseNamespaceId(ns))).attachPeerChannel(peer, channel);
  },

  async bridgeRead(ns: NamespaceId, read: BridgeReadOut): Promise<BridgeReadReply> {
    const session = sessions.get(parseNamespaceId(ns));
    if (!session) return { ok: false, code: 'not_found', message: 'this workspace is not open here' };
    const reply = await session.bridgeRead(parseBridgeReadOut(read));
    return reply.ok ? Comlink.transfer(reply, [reply.data.buffer]) : reply;
  },

  async peerClosed(ns: NamespaceId, peerId: string) {
    sessions.get(parseNamespaceId(ns))?.peerClosed(peerId);
  },

  async setSelfPeerId(ns: NamespaceId, peerId: string) {
    (await sessionFor(parseNamespaceId(ns))).setSelfPeerId(peerId);
  },

  async serveFileReads(port: MessagePort) {
    if (!(port instanceof MessagePort)) throw new Error('serveFileReads needs a MessagePort');
    const { registry, state, blocks } = ready();
    serveFileRead(port, {
      lookup: async (ns, path) => {
        if (!(await registry.get(ns))) return 'unknown-workspace';
        const session = sessions.get(ns);
        return (session ? await session.fileRecord(path) : await state.file(ns, path)) ?? null;
      },
      fetchNow: (ns, file, indexes, signal, from, ahead) => fetchNow(ns, blockWants(ns, file, indexes, from), signal, ahead),
      readAhead: (ns) => sessions.get(ns)?.readAheadBlocks() ?? 1,
      blob: (hash) => blocks.getBlob(hash),
      complete: async (file) => (await blocks.hasBlocks(file.blocks)).size === new Set(file.blocks).size,
      pieces: async (ns, file, index) => (await sessions.get(ns)?.pieceReader(blockWants(ns, file, [index])[0])) ?? null,
    });
  },

  async fetchBlocksNow(ns: NamespaceId, hashes: BlockHash[]) {
    const id = parseNamespaceId(ns);
    const checked = hashes.map((hash) => parseBlockHash(hash));
    const sjid = sessions.get(id)?.knownCursor ?? (await ready().registry.get(id))?.cursor ?? 0;
    await fetchNow(id, checked.map((hash) => ({ ns: id, hash, sjid, sizeHint: 0 })));
  },

  async setKeep(ns: NamespaceId, folder: string, mode: KeepMode | null) {
    if (mode !== null && mode !== 'keep' && mode !== 'online') throw new TypeError('mode must be "keep", "online" or null');
    if (typeof folder !== 'string') throw new TypeError('folder must be a string');
    const path = folder.replace(/^\/+|\/+$/g, '');
    await (await sessionFor(parseNamespaceId(ns))).setKeep(path === '' ? '' : parseFilePath(path, 'folder'), mode);
  },

  async answerJoinQuestion(ns: NamespaceId, answer: JoinAnswer) {
    if (answer !== 'keep' && answer !== 'online') throw new TypeError('answer must be "keep" or "online"');
    await (await sessionFor(parseNamespaceId(ns))).answerJoinQuestion(answer);
  },

  async setOnlineCacheLimit(ns: NamespaceId, bytes: number) {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new TypeError('the cache limit must be a whole number of bytes');
    const id = parseNamespaceId(ns);
    await ready().registry.setCacheLimit(id, bytes);
    sessions.get(id)?.setCacheLimit(bytes);
  },

  async linkedFolder(ns: NamespaceId) {
    return folders.linked(parseNamespaceId(ns));
  },

  async linkFolder(ns: NamespaceId, folder: FileSystemDirectoryHandle) {
    const id = parseNamespaceId(ns);
    await folders.link(id, folder, await linkedWorkspace(id));
  },

  async resumeFolder(ns: NamespaceId) {
    const id = parseNamespaceId(ns);
    await folders.resume(id, await linkedWorkspace(id));
  },

  async unlinkFolder(ns: NamespaceId) {
    await folders.unlink(parseNamespaceId(ns));
  },

  async folderSyncStatus(ns: NamespaceId) {
    return folders.status(parseNamespaceId(ns));
  },

  async scanFolder(ns: NamespaceId) {
    return folders.scan(parseNamespaceId(ns));
  },

  async forget(ns: NamespaceId) {
    const id = parseNamespaceId(ns);
    await folders.unlink(id);
    await api.close(id);
    await ready().registry.forget(id);
  },
};

/**
 * Whether a block belongs in the evictable cache: an open workspace's online-only file uses
 * it and no open workspace keeps it.
 */
function isCacheOnlyBlock(hash: BlockHash): boolean {
  let online = false;
  for (const session of sessions.values()) {
    const engine = session.syncEngine();
    if (!engine) continue;
    if (engine.keepsBlock(hash)) return false;
    if (engine.isLiveBlock(hash)) online = true;
  }
  return online;
}

/**
 * Removes cache blocks `ns` evicted, except those a kept file of another workspace open in
 * this tab uses (blocks are shared by content). A workspace not open here that keeps one
 * finds it missing when it next starts and fetches it again.
 */
async function evictUnlessKept(ns: NamespaceId, hashes: readonly BlockHash[]): Promise<void> {
  const others = [...sessions.values()].filter((session) => session.namespaceId !== ns).map((session) => session.syncEngine());
  const doomed = hashes.filter((hash) => !others.some((engine) => engine?.keepsBlock(hash)));
  await ready().blocks.deleteBlocks(doomed);
}

/** The session's priority fetch when the workspace is open in this tab, else straight from the server. */
async function fetchNow(ns: NamespaceId, wants: WantedBlock[], signal?: AbortSignal, ahead = false): Promise<void> {
  const session = sessions.get(ns);
  if (session) return session.fetchBlocksNow(wants, signal, { ahead });
  return fetchFromServerNow(ns, wants.map((want) => want.hash), await apiFor(ns), ready().blocks, sha256, signal);
}

/** `from`: where a reader's bytes start in the first of these blocks (rounded down to a piece). */
function blockWants(ns: NamespaceId, file: FileRecord, indexes: number[], from?: number): WantedBlock[] {
  return indexes.map((index, i) => {
    const sizeHint = expectedBlockSize(file.size, file.blocks.length, index);
    const want: WantedBlock = { ns, hash: file.blocks[index], sjid: file.sjid, sizeHint };
    if (i === 0 && from !== undefined) want.from = Math.min(Math.floor(from / REQUEST_FROM_ALIGNMENT), Math.floor((sizeHint - 1) / REQUEST_FROM_ALIGNMENT)) * REQUEST_FROM_ALIGNMENT;
    return want;
  });
}

/** What a zip of `folder` of an open workspace reads. */
async function zipSourceFor(ns: NamespaceId, folder: string): Promise<ZipSource> {
  const session = sessions.get(parseNamespaceId(ns));
  if (!session) throw new Error('this workspace is not open in this tab');
  const path = typeof folder === 'string' ? folder.replace(/^\/+|\/+$/g, '') : '';
  const id = parseNamespaceId(ns);
  return {
    ...(await session.zipSource(path === '' ? '' : parseFilePath(path, 'folder'))),
    blocks: new ZipBlocks(ready().blocks),
    fetchNow: (record, hashes, signal) => {
      // One want per missing hash (a file may repeat a block).
      const missing = new Set(hashes);
      const indexes = record.blocks.flatMap((hash, index) => (missing.delete(hash) ? [index] : []));
      return fetchNow(id, blockWants(id, record, indexes), signal);
    },
  };
}

/** The blocks as one Blob, composed by reference (never copied into one buffer); null when one is not stored. */
async function composeBlob(blocks: IdbBlockStore, hashes: readonly BlockHash[]): Promise<Blob | null> {
  const parts: Blob[] = [];
  for (const hash of hashes) {
    const blob = await blocks.getBlob(hash);
    if (!blob) return null;
    parts.push(blob);
  }
  return new Blob(parts);
}

/** The page is trusted code, but a query still gets sane bounds before it drives a sort. */
function parseFolderQuery(query: FolderQuery): FolderQuery {
  const sort = query.sort === 'size' || query.sort === 'modified' ? query.sort : 'name';
  const whole = (value: unknown, max: number) => (typeof value === 'number' && Number.isFinite(value) ? Math.min(max, Math.max(0, Math.floor(value))) : 0);
  return {
    folder: typeof query.folder === 'string' ? query.folder.replace(/^\/+|\/+$/g, '') : '',
    sort,
    descending: query.descending === true,
    filter: typeof query.filter === 'string' ? query.filter.slice(0, 200) : '',
    offset: whole(query.offset, Number.MAX_SAFE_INTEGER),
    limit: whole(query.limit, 500),
  };
}

function parseUploadPart(part: UploadPart): UploadPart {
  const count = (value: unknown) => (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : 0);
  return { first: part?.first === true, drop: { files: count(part?.drop?.files) } };
}

Comlink.expose(api);
