import type { NamespaceId } from '../src/protocol/index.ts';

/**
 * The sync worker's interface as the UI sees it through comlink. The UI never touches
 * blocks or tokens: it asks the worker and renders the views the worker pushes.
 */

export interface WorkspaceSummary {
  namespaceId: NamespaceId;
  name: string;
}

export type FileSyncStatus = 'synced' | 'syncing' | 'waiting';

export interface FileView {
  path: string;
  size: number;
  mtime: number;
  status: FileSyncStatus;
  /** Bytes of this file stored on this device. */
  bytesDone: number;
  bytesPerSecond: number;
}

export type UploadState = 'queued' | 'hashing' | 'uploading' | 'committing' | 'done' | 'failed';

export interface UploadView {
  id: number;
  path: string;
  size: number;
  /** Bytes read, cut and hashed so far. */
  bytesHashed: number;
  /** Bytes the server now holds (uploaded now or already known to it). */
  bytesUploaded: number;
  state: UploadState;
  error?: string;
}

/**
 * `leader`: this tab holds the sync lock and syncs. `follower`: another tab of this browser
 * syncs the same IndexedDB; this tab mirrors its state. `connecting`: starting or retrying.
 */
export type SyncRole = 'leader' | 'follower' | 'connecting';

export interface WorkspaceView {
  namespaceId: NamespaceId;
  name: string;
  role: SyncRole;
  cursor: number;
  syncedCursor: number;
  files: FileView[];
  totalBytes: number;
  doneBytes: number;
  bytesPerSecond: number;
  bytesFromServer: number;
  bytesFromPeers: number;
  uploads: UploadView[];
  /** Last problem worth showing (network down, server error); cleared when it recovers. */
  error: string | null;
}

export interface UploadInput {
  file: File;
  /** Workspace-relative path, "/" separated (folder drops keep their structure). */
  path: string;
}

export interface SyncWorkerApi {
  /** `apiBase` is the server origin, e.g. "http://localhost:8080". */
  init(apiBase: string): Promise<void>;
  listWorkspaces(): Promise<WorkspaceSummary[]>;
  createWorkspace(name: string): Promise<{ namespaceId: NamespaceId; shareLink: string }>;
  /** Joins with the invite from a share link; rejoining a known workspace is a no-op. */
  joinWorkspace(invite: string): Promise<WorkspaceSummary>;
  shareLink(ns: NamespaceId): Promise<string | null>;
  /** Revokes the current share link and returns a new one. */
  resetShareLink(ns: NamespaceId): Promise<string>;
  /** Starts syncing `ns` (or mirroring it when another tab syncs) and pushes views to `onView`. */
  open(ns: NamespaceId, onView: (view: WorkspaceView) => void): Promise<void>;
  close(ns: NamespaceId): Promise<void>;
  upload(ns: NamespaceId, files: UploadInput[]): Promise<void>;
  rename(ns: NamespaceId, from: string, to: string): Promise<void>;
  remove(ns: NamespaceId, path: string): Promise<void>;
  /** The file's bytes, assembled from stored blocks without one big buffer. */
  fileBlob(ns: NamespaceId, path: string): Promise<Blob>;
  /** Forgets the workspace on this device (blocks other workspaces use are kept). */
  forget(ns: NamespaceId): Promise<void>;
}
