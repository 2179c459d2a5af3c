import type { FileProgress, NamespaceSync } from '../src/engine/namespace-sync.ts';
import type { FilePath } from '../src/protocol/index.ts';
import type { KeepSetting } from '../src/engine/keep-policy.ts';
import type { FileView, JoinQuestion, PeerView, StorageView, SyncRole, UploadTotals, UploadView, WorkspaceView } from './sync-api.ts';
import type { WorkspaceRecord } from './idb-store.ts';
import type { FileDelta } from './workspace-tree.ts';

/** The part of a view that every tab of this browser shares (the leader broadcasts it). */
export type SharedView = Omit<WorkspaceView, 'role' | 'uploads' | 'uploadTotals' | 'listingVersion' | 'storage' | 'keep'>;

export function sharedViewOf(record: WorkspaceRecord, engine: NamespaceSync, peers: PeerView[], joinQuestion: JoinQuestion | null): SharedView {
  const summary = engine.summary();
  return {
    namespaceId: record.namespaceId,
    name: record.name,
    cursor: summary.cursor,
    syncedCursor: summary.syncedCursor,
    fileCount: summary.fileCount,
    totalBytes: summary.totalBytes,
    doneBytes: summary.doneBytes,
    bytesPerSecond: summary.bytesPerSecond,
    bytesFromServer: summary.bytesFromServer,
    bytesFromPeers: summary.bytesFromPeers,
    peers,
    error: summary.error,
    storageFull: summary.storageFull,
    onlineFileCount: summary.onlineFileCount,
    onlineBytes: summary.onlineBytes,
    cacheBytes: summary.cacheBytes,
    joinQuestion,
  };
}

export function emptySharedView(record: WorkspaceRecord): SharedView {
  return {
    namespaceId: record.namespaceId,
    name: record.name,
    cursor: record.cursor,
    syncedCursor: record.syncedCursor,
    fileCount: 0,
    totalBytes: 0,
    doneBytes: 0,
    bytesPerSecond: 0,
    bytesFromServer: 0,
    bytesFromPeers: 0,
    peers: [],
    error: null,
    storageFull: null,
    onlineFileCount: 0,
    onlineBytes: 0,
    cacheBytes: 0,
    joinQuestion: null,
  };
}

export function fileViewOf({ file, bytesDone, status, bytesPerSecond, onlineOnly }: FileProgress): FileView {
  const view: FileView = { path: file.path, size: file.size, mtime: file.mtime, status, bytesDone, bytesPerSecond };
  if (onlineOnly) view.onlineOnly = true;
  return view;
}

/** What changed in the engine's file table since the last call: one delta per touched path. */
export function changedFileDeltas(engine: NamespaceSync): FileDelta[] {
  const paths = engine.drainChangedFiles();
  if (paths.length === 0) return [];
  const inFlight = engine.blocksInFlight();
  return paths.map((path) => {
    const progress = engine.fileProgress(path, inFlight);
    return progress ? fileViewOf(progress) : { path, removed: true as const };
  });
}

/** Every live file of the engine (when a tree starts over). */
export function allFileViews(engine: NamespaceSync): FileView[] {
  const inFlight = engine.blocksInFlight();
  const views: FileView[] = [];
  for (const file of engine.liveFiles()) views.push(fileViewOf(engine.fileProgress(file.path as FilePath, inFlight)!));
  return views;
}

export function fullView(
  shared: SharedView,
  role: SyncRole,
  uploads: { list: UploadView[]; totals: UploadTotals },
  listingVersion: number,
  storage: StorageView | null,
  keep: KeepSetting[],
): WorkspaceView {
  return { ...shared, role, uploads: uploads.list, uploadTotals: uploads.totals, listingVersion, storage, keep };
}
