import type { KeepMode, KeepSetting } from '../src/engine/keep-policy.ts';
import type { BridgePieceSink } from '../src/engine/bridged-source.ts';

export type { KeepMode, KeepSetting };
import type { BlockHash, BridgeReadOut, BridgeReadReply, DeletedFilesResponse, HistoryResponse, NamespaceId } from '../src/protocol/index.ts';

/**
 * The sync worker's interface as the UI sees it through comlink. The UI never touches
 * blocks or tokens: it asks the worker and renders the views the worker pushes.
 */

export interface WorkspaceSummary {
  namespaceId: NamespaceId;
  name: string;
}

/** `online`: an online-only file not stored here (fetched when opened); `synced` once its blocks are. */
export type FileSyncStatus = 'synced' | 'syncing' | 'waiting' | 'online';

export interface FileView {
  path: string;
  size: number;
  mtime: number;
  status: FileSyncStatus;
  /** Bytes of this file stored on this device. */
  bytesDone: number;
  bytesPerSecond: number;
  /** The keep policy makes this file (or every file of this folder) online only. */
  onlineOnly?: boolean;
}

export type FolderSort = 'name' | 'size' | 'modified';

/** Which rows of the folder view the page wants (only those on screen, plus a margin). */
export interface FolderQuery {
  /** Workspace-relative folder path, '' for the top. */
  folder: string;
  sort: FolderSort;
  descending: boolean;
  /** Case-insensitive part of a name; when set, matches anywhere below `folder` are listed. */
  filter: string;
  offset: number;
  limit: number;
}

/** A row of the folder view: a folder (with what is below it) or a file. */
export type ListingRow =
  | ({ kind: 'file'; name: string } & FileView)
  | ({ kind: 'folder'; name: string; fileCount: number; /** This device's keep mode for the folder. */ keep?: KeepMode } & FileView);

export interface FolderListing {
  folder: string;
  /** False when the folder does not exist (any more): the page goes up. */
  exists: boolean;
  /** Rows in the whole listing (the page sizes its scroll area with it). */
  total: number;
  offset: number;
  rows: ListingRow[];
  /** The tree version these rows come from. */
  version: number;
  /** The listed folder itself as a row (size, count, state), null at the top. */
  folderSummary: ListingRow | null;
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
  /** Another device's version took the path first: this upload was kept as this conflicted copy. */
  conflictedCopy?: string;
}

/** Every upload since the queue was last empty, in numbers (the list shows only some rows). */
export interface UploadTotals {
  files: number;
  bytes: number;
  doneFiles: number;
  failedFiles: number;
  bytesUploaded: number;
  /** A dropped or picked folder is still being walked: more files may be added to `files`. */
  counting?: boolean;
}

/**
 * `leader`: this tab holds the sync lock and syncs. `follower`: another tab of this browser
 * syncs the same IndexedDB; this tab mirrors its state. `connecting`: starting or retrying.
 */
export type SyncRole = 'leader' | 'follower' | 'connecting';

/** A peer of the workspace as this device sees it. */
export interface PeerView {
  peerId: string;
  label: string;
  /** Its advertised journal cursor (everything up to it is on that device), if it sent one. */
  cursor: number | null;
  /** A block channel to it is open (for a LAN peer: the server's bridge reaches it). */
  connected: boolean;
  /** A LAN peer (a native daemon) reached through the server's LAN bridge. */
  lan: boolean;
  /** Bytes of blocks from it that passed the hash check and were stored. */
  bytesReceived: number;
  /**
   * Block bytes this browser sent it over WebRTC (DATA payloads, this workspace's; a block it
   * cancelled part-way counts what went out). Zero for a LAN peer: the server's bridge reads
   * blocks from this browser for the LAN without saying which LAN peer asked.
   */
  bytesSent: number;
  /** It sent a block that failed its hash, or broke the protocol: not asked again this session. */
  penalised: boolean;
}

/** A peer download advertisement relayed to this page, for the open workspace. */
export interface PeerAdvert {
  peerId: string;
  label: string;
  cursor: number;
  at: number;
  /** A LAN peer behind the server's bridge: fetched through the relay, never connected to. */
  lan?: boolean;
}

/** What the worker asks of the page's peer transport (relay socket + WebRTC). */
export interface PeerTransport {
  /** Tell the workspace's peers that this device holds everything up to `cursor`. */
  advertise(cursor: number): void;
  /** Connect to these peers (most wanted first); the transport caps how many. */
  wantPeers(peerIds: string[]): void;
  /**
   * One block from a LAN peer through the server's bridge, streamed: each piece goes to `sink`
   * (a Comlink proxy; the page awaits each call) as it arrives, unverified; resolves with the
   * block's size once the bridge vouched for all of it (the engine checks the hash again).
   */
  bridgeFetch(peerId: string, hash: string, sink: BridgePieceSink): Promise<number>;
}

export interface WorkspaceView {
  namespaceId: NamespaceId;
  name: string;
  role: SyncRole;
  cursor: number;
  syncedCursor: number;
  /** Live files in the workspace (the rows come from listFolder). */
  fileCount: number;
  /** Changes whenever the file tree does: the page asks listFolder again for its rows. */
  listingVersion: number;
  totalBytes: number;
  doneBytes: number;
  bytesPerSecond: number;
  bytesFromServer: number;
  bytesFromPeers: number;
  /** The running uploads and a bounded tail of waiting, finished and failed ones. */
  uploads: UploadView[];
  uploadTotals: UploadTotals;
  peers: PeerView[];
  /** Last problem worth showing (network down, server error); cleared when it recovers. */
  error: string | null;
  /** Set while syncing waits for storage space (the browser's quota for this site is used up). */
  storageFull: { remainingBytes: number; freeBytes: number | null; neededBytes: number } | null;
  /** This site's storage in this browser (all workspaces), when the browser reports it. */
  storage: StorageView | null;
  /** Which folders this device keeps and which are online only ('' is the whole workspace). */
  keep: KeepSetting[];
  /** Online-only files (not in totalBytes/doneBytes) and their bytes. */
  onlineFileCount: number;
  onlineBytes: number;
  /** Bytes of blocks kept because online-only files were read (evicted least recently used first). */
  cacheBytes: number;
  /**
   * Set when this device just joined and the files to keep will not fit in the storage the
   * browser allows: nothing is fetched until the user answers (answerJoinQuestion).
   */
  joinQuestion: JoinQuestion | null;
}

export interface JoinQuestion {
  /** Bytes the kept files still need. */
  neededBytes: number;
  /** What the browser says is free for this site (quota minus usage), when it says. */
  freeBytes: number | null;
}

/** The answer to a JoinQuestion: keep everything anyway, or make the whole workspace online only. */
export type JoinAnswer = 'keep' | 'online';

export interface StorageView {
  usage: number;
  quota: number;
  /** The browser agreed not to clear this site's data under storage pressure. */
  persisted: boolean;
}

export interface UploadInput {
  file: File;
  /** Workspace-relative path, "/" separated (folder drops keep their structure). */
  path: string;
}

/**
 * One part of a drop the page sends in parts. Handing the worker a File it has not sized yet
 * costs the page's main thread a synchronous file-metadata round trip (about half a
 * millisecond in Chromium 156; reading `file.size` costs the same), so 100,000 files go a few
 * dozen at a time between frames and the page never reads their sizes. The first part
 * announces the drop's file count, so the count shown is the drop's from the start; bytes
 * add up as parts arrive.
 */
export interface UploadPart {
  first: boolean;
  drop: { files: number };
}

/** How far a .zip of a folder has got (`writeZip`, `zipToDownload`). */
export interface ZipProgressView {
  /** Files and bytes of content in the folder when the zip began. */
  files: number;
  bytes: number;
  filesDone: number;
  bytesDone: number;
  /** A file whose blocks are not all on this device yet: the zip waits for the sync to bring them. */
  waitingFor: string | null;
  done: boolean;
}

export interface OpenOptions {
  /** False: sync from the server only (no relay, no WebRTC), and do not wait for peers. */
  peers?: boolean;
}

/** Two-way sync of a workspace with a folder on this computer (workers/folder-sync). */
export interface FolderSyncView {
  folderName: string;
  /** `other-tab`: another tab of this browser syncs the workspace; the folder waits for it to close. */
  state: 'starting' | 'syncing' | 'idle' | 'error' | 'other-tab';
  /** Files folder sync knows in the folder (written or committed by it). */
  trackedFiles: number;
  /** Since linking in this tab: files written into the folder, uploaded from it, deleted either way, conflicted copies made. */
  written: number;
  uploaded: number;
  deleted: number;
  conflicts: number;
  /** Journal files not written yet because their blocks are still arriving. */
  waiting: number;
  /** Names refused (unsafe for the folder or for the workspace), never written or synced: the first 100. */
  refused: { path: string; reason: string }[];
  refusedCount: number;
  /** Files that failed this pass (tried again later), with the reason. */
  failed: { path: string; error: string }[];
  error: string | null;
  /** When the last full scan of the folder ended (ms since the epoch). */
  lastScanAt: number | null;
  /** Paths looked at alone because FileSystemObserver reported them changed (no full scan needed). */
  pathsChecked: number;
  /**
   * Live journal files the journal → folder passes looked at, in all: a pass looks at the
   * files that changed since the last one, the whole table only when it must.
   */
  journalLooked: number;
  /** How folder changes are noticed: FileSystemObserver, or scans on a timer and on page focus. */
  watching: 'observer' | 'scan';
}

export interface SyncWorkerApi {
  /**
   * `apiBase` is the server origin, e.g. "http://localhost:8080"; `device` this browser's
   * label (the peer label), recorded with its commits and used in conflicted-copy names.
   */
  init(apiBase: string, device?: string): Promise<void>;
  listWorkspaces(): Promise<WorkspaceSummary[]>;
  createWorkspace(name: string): Promise<{ namespaceId: NamespaceId; shareLink: string }>;
  /** Joins with the invite from a share link; rejoining a known workspace is a no-op. */
  joinWorkspace(invite: string): Promise<WorkspaceSummary>;
  shareLink(ns: NamespaceId): Promise<string | null>;
  /** Revokes the current share link and returns a new one. */
  resetShareLink(ns: NamespaceId): Promise<string>;
  /** Starts syncing `ns` (or mirroring it when another tab syncs) and pushes views to `onView`. */
  open(ns: NamespaceId, onView: (view: WorkspaceView) => void, options?: OpenOptions): Promise<void>;
  close(ns: NamespaceId): Promise<void>;
  /** One window of the folder view of an open workspace. */
  listFolder(ns: NamespaceId, query: FolderQuery): Promise<FolderListing>;
  /** Queues files for upload; `part` when the page sends one drop in several calls. */
  upload(ns: NamespaceId, files: UploadInput[], part?: UploadPart): Promise<void>;
  /**
   * Uploads everything below these folders (a drop's `getAsFileSystemHandle()` or
   * `showDirectoryPicker()`), each under its own name. The worker walks them as the uploads
   * make room, so a folder of any size costs bounded memory and no main-thread time.
   */
  uploadFolders(ns: NamespaceId, folders: FileSystemDirectoryHandle[]): Promise<void>;
  rename(ns: NamespaceId, from: string, to: string): Promise<void>;
  remove(ns: NamespaceId, path: string): Promise<void>;
  /**
   * The versions of one path, newest first, deletions included, each with the device that
   * committed it; `before` (an sjid from the last answer) pages back when `more` is set.
   */
  history(ns: NamespaceId, path: string, before?: number): Promise<HistoryResponse>;
  /**
   * Makes version `sjid` of `path` the live one again (a commit of its blocks). If another
   * device changed the file meanwhile, the restored version is kept as a conflicted copy:
   * `path` says where it landed.
   */
  restoreVersion(ns: NamespaceId, path: string, sjid: number): Promise<{ path: string; conflicted: boolean }>;
  /**
   * The bytes of version `sjid` of `path` (from its history): blocks this device lacks are
   * fetched from the server and checked against their hashes first.
   */
  versionBlob(ns: NamespaceId, path: string, sjid: number): Promise<Blob>;
  /**
   * Files deleted and not written since, newest deletion first, each with its last live
   * version (restoreDeleted brings it back); `before` pages back.
   */
  deletedFiles(ns: NamespaceId, before?: number): Promise<DeletedFilesResponse>;
  /**
   * Commits a deleted file's last live version `lastSjid` again with parent 0; a path written
   * again meanwhile gets it as a conflicted copy (`path` says where it landed).
   */
  restoreDeleted(ns: NamespaceId, path: string, lastSjid: number): Promise<{ path: string; conflicted: boolean }>;
  /** The file's bytes, assembled from stored blocks without one big buffer. */
  fileBlob(ns: NamespaceId, path: string): Promise<Blob>;
  /**
   * Writes `folder` ('' for the whole workspace) of an open workspace as a .zip into `target`
   * (from `showSaveFilePicker`, or any FileSystemFileHandle), streamed: entries are named
   * relative to the folder, stored uncompressed, with zip64 where needed. `jobId` names the
   * job for `cancelZip`. A file not fully synced yet is waited for. On failure or cancel the
   * file is left untouched (an empty one the picker made is removed) and the promise rejects.
   */
  writeZip(ns: NamespaceId, folder: string, target: FileSystemFileHandle, jobId: string, onProgress: (progress: ZipProgressView) => void): Promise<ZipProgressView>;
  /**
   * The same archive as a byte stream posted on `port` (`{type: 'nearsync:zip-stream', stream}`)
   * to the service worker, which answers the download `/w/<ns>/zip/<jobId>/<name>` with it:
   * the way out where `showSaveFilePicker` is missing. Resolves once the download has read
   * the whole archive; rejects (AbortError) when the download or `cancelZip(jobId)` stopped it.
   */
  zipToDownload(ns: NamespaceId, folder: string, jobId: string, port: MessagePort, onProgress: (progress: ZipProgressView) => void): Promise<ZipProgressView>;
  /** Stops a running `writeZip` or `zipToDownload`; unknown ids are ignored. */
  cancelZip(jobId: string): Promise<void>;
  /** Tokens for the relay handshake of `ns` (the transport runs on the page's thread). */
  relayCredentials(ns: NamespaceId): Promise<{ tokens: string[] }>;
  /** The page's transport for `ns`; replaces an earlier one. */
  attachTransport(ns: NamespaceId, transport: PeerTransport): Promise<void>;
  /**
   * The current adverts of `ns` (the whole list, replacing the last one). `lanBridge`: the
   * relay bridges LAN peers, whose adverts may come a moment after its first list.
   */
  setAdverts(ns: NamespaceId, adverts: PeerAdvert[], lanBridge?: boolean): Promise<void>;
  /**
   * A block channel to a peer of `ns`: an RTCDataChannel transferred while still connecting,
   * or a MessagePort relayed by the page where channels cannot be transferred.
   */
  attachPeerChannel(ns: NamespaceId, peer: { peerId: string; label: string }, channel: RTCDataChannel | MessagePort): Promise<void>;
  peerClosed(ns: NamespaceId, peerId: string): Promise<void>;
  /** The server's LAN bridge reads part of a block of `ns` for a LAN peer. */
  bridgeRead(ns: NamespaceId, read: BridgeReadOut): Promise<BridgeReadReply>;
  /** This page's peer id on the relay (it changes when the relay connection is renewed). */
  setSelfPeerId(ns: NamespaceId, peerId: string): Promise<void>;
  /**
   * Serves one read of a file URL (`/w/<ns>/file/<path>`) from the service worker on `port`
   * (messages in file-read-messages.ts): Range to blocks, missing blocks fetched first.
   */
  serveFileReads(port: MessagePort): Promise<void>;
  /**
   * Priority fetch: these blocks of `ns` before anything the background sync wants (peers that
   * hold them, else the server), verified and stored; resolves once all are stored, rejects
   * when one cannot be had. In the worker, WorkspaceSession.fetchBlocksNow(wants, signal)
   * takes an AbortSignal and the blocks' journal entries (which peers can serve them).
   */
  fetchBlocksNow(ns: NamespaceId, hashes: BlockHash[]): Promise<void>;
  /**
   * Keeps `folder` of `ns` on this device or makes it online only ('' is the whole workspace;
   * settings below it are replaced); `null` makes it follow its parent again.
   */
  setKeep(ns: NamespaceId, folder: string, mode: KeepMode | null): Promise<void>;
  /** Answers the view's `joinQuestion`: keep everything anyway, or make the workspace online only. */
  answerJoinQuestion(ns: NamespaceId, answer: JoinAnswer): Promise<void>;
  /** Bytes of blocks kept for online-only files of `ns` on this device before the least recently used go. */
  setOnlineCacheLimit(ns: NamespaceId, bytes: number): Promise<void>;
  /** The folder `ns` was linked to on this device (the page checks and asks for permission with it). */
  linkedFolder(ns: NamespaceId): Promise<FileSystemDirectoryHandle | null>;
  /** Links `ns` to a folder (read-write permission granted) and starts syncing both ways. */
  linkFolder(ns: NamespaceId, folder: FileSystemDirectoryHandle): Promise<void>;
  /** Starts syncing with the linked folder again (after a reload, once permission is granted). */
  resumeFolder(ns: NamespaceId): Promise<void>;
  /** Stops syncing with the folder and forgets it (the folder's files stay as they are). */
  unlinkFolder(ns: NamespaceId): Promise<void>;
  /** Folder sync's state, null when `ns` syncs with no folder in this tab. */
  folderSyncStatus(ns: NamespaceId): Promise<FolderSyncView | null>;
  /** Look at the folder for changes soon (the page gained focus). */
  scanFolder(ns: NamespaceId): Promise<FolderSyncView | null>;
  /** Forgets the workspace on this device (blocks other workspaces use are kept). */
  forget(ns: NamespaceId): Promise<void>;
}
