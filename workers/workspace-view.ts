import type { EngineSnapshot } from '../src/engine/namespace-sync.ts';
import type { FileView, PeerView, SyncRole, UploadView, WorkspaceView } from './sync-api.ts';
import type { WorkspaceRecord } from './idb-store.ts';

/** The part of a view that every tab of this browser shares (the leader broadcasts it). */
export type SharedView = Omit<WorkspaceView, 'role' | 'uploads'>;

export function sharedViewOf(record: WorkspaceRecord, snapshot: EngineSnapshot, peers: PeerView[]): SharedView {
  const files: FileView[] = snapshot.files
    .map(({ file, bytesDone, status, bytesPerSecond }) => ({
      path: file.path,
      size: file.size,
      mtime: file.mtime,
      status,
      bytesDone,
      bytesPerSecond,
    }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return {
    namespaceId: record.namespaceId,
    name: record.name,
    cursor: snapshot.cursor,
    syncedCursor: snapshot.syncedCursor,
    files,
    totalBytes: snapshot.totalBytes,
    doneBytes: snapshot.doneBytes,
    bytesPerSecond: snapshot.bytesPerSecond,
    bytesFromServer: snapshot.bytesFromServer,
    bytesFromPeers: snapshot.bytesFromPeers,
    peers,
    error: snapshot.error,
  };
}

export function emptySharedView(record: WorkspaceRecord): SharedView {
  return {
    namespaceId: record.namespaceId,
    name: record.name,
    cursor: record.cursor,
    syncedCursor: record.syncedCursor,
    files: [],
    totalBytes: 0,
    doneBytes: 0,
    bytesPerSecond: 0,
    bytesFromServer: 0,
    bytesFromPeers: 0,
    peers: [],
    error: null,
  };
}

export function fullView(shared: SharedView, role: SyncRole, uploads: UploadView[]): WorkspaceView {
  return { ...shared, role, uploads };
}
