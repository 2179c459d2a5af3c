/// <reference lib="webworker" />
import * as Comlink from 'comlink';
import { ServerApi } from '../src/engine/server-api.ts';
import { describeError, inviteFromLink, parseBridgeReadOut, parseFilePath, parseNamespaceId, type BridgeReadOut, type BridgeReadReply, type NamespaceId } from '../src/protocol/index.ts';
import { BlockFiles } from './block-files.ts';
import { blockBuffers } from './block-buffers.ts';
import { BlockWriter } from './block-writer.ts';
import { holdWriterLock, writerIsGone } from './block-writer-lock.ts';
import { IdbBlockStore, IdbStateStore, WorkspaceRegistry, openNearsyncDb, type NearsyncDb } from './idb-store.ts';
import type { FolderQuery, OpenOptions, PeerAdvert, PeerTransport, SyncWorkerApi, UploadInput, WorkspaceView } from './sync-api.ts';
import { WorkspaceSession } from './workspace-session.ts';

/**
 * The sync worker: owns IndexedDB, the tokens, the engine and every block byte. The UI
 * reaches it only through the comlink interface below.
 */

interface WorkerContext {
  base: string;
  db: NearsyncDb;
  registry: WorkspaceRegistry;
  blocks: IdbBlockStore;
  state: IdbStateStore;
}

let context: WorkerContext | null = null;
const sessions = new Map<NamespaceId, WorkspaceSession>();

function ready(): WorkerContext {
  if (!context) throw new Error('the sync worker is not initialised');
  return context;
}

async function apiFor(ns: NamespaceId): Promise<ServerApi> {
  const { base, registry } = ready();
  const record = await registry.get(ns);
  if (!record) throw new Error('this workspace is not known on this device');
  return new ServerApi(base, record.token);
}

async function sessionFor(ns: NamespaceId): Promise<WorkspaceSession> {
  const existing = sessions.get(ns);
  if (existing) return existing;
  const { registry, blocks, state } = ready();
  const record = await registry.get(ns);
  if (!record) throw new Error('this workspace is not known on this device');
  const session = new WorkspaceSession({ record, api: await apiFor(ns), blocks, state });
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

const api: SyncWorkerApi = {
  async init(apiBase: string) {
    if (context) return;
    const db = await openNearsyncDb();
    const writerId = crypto.randomUUID();
    await holdWriterLock(writerId);
    const files = await BlockFiles.open(writerId);
    const blocks = new IdbBlockStore(db, files, BlockWriter.start(writerId, blockBuffers));
    context = {
      base: apiBase.replace(/\/+$/, ''),
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
    const session = sessions.get(ns);
    sessions.delete(ns);
    await session?.close();
  },

  async listFolder(ns: NamespaceId, query: FolderQuery) {
    const session = sessions.get(parseNamespaceId(ns));
    if (!session) throw new Error('this workspace is not open in this tab');
    return session.list(parseFolderQuery(query));
  },

  async upload(ns: NamespaceId, files: UploadInput[]) {
    (await sessionFor(parseNamespaceId(ns))).upload(files);
  },

  async rename(ns: NamespaceId, from: string, to: string) {
    await (await sessionFor(parseNamespaceId(ns))).rename(from, to);
  },

  async remove(ns: NamespaceId, path: string) {
    await (await sessionFor(parseNamespaceId(ns))).remove(path);
  },

  async fileBlob(ns: NamespaceId, path: string) {
    const { state, blocks } = ready();
    const namespaceId = parseNamespaceId(ns);
    const session = sessions.get(namespaceId);
    const filePath = parseFilePath(path, 'path');
    const file = session ? await session.fileRecord(filePath) : await state.file(namespaceId, filePath);
    if (!file) throw new Error(`${path} is not in this workspace`);
    const parts: Blob[] = [];
    for (const hash of file.blocks) {
      const blob = await blocks.getBlob(hash);
      if (!blob) throw new Error(`${path} is not fully synced yet`);
      parts.push(blob);
    }
    // Blobs compose by reference: the file is never copied into one buffer.
    return new Blob(parts);
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

  async forget(ns: NamespaceId) {
    const id = parseNamespaceId(ns);
    await api.close(id);
    await ready().registry.forget(id);
  },
};

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

Comlink.expose(api);
