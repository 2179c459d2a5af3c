import type { BlockHash, BlockUpload, BlockUploadBatchResponse, CommitRequest, Cursor, FilePath, JournalPage, NamespaceId } from '../protocol/index.ts';

/**
 * Ports of the sync engine. The engine is platform-free: the browser worker plugs in
 * IndexedDB and fetch, the LAN daemon plugs in files and TCP. Nothing here names a platform.
 */

/** SHA-256 of some bytes, as lower-case hex (WebCrypto in browsers, node:crypto in Node). */
export type Sha256 = (bytes: Uint8Array) => Promise<BlockHash>;

/** The latest entry of one live (not deleted) path. */
export interface FileRecord {
  path: FilePath;
  size: number;
  mtime: number;
  blocks: BlockHash[];
  /** The journal entry that last wrote this path. */
  sjid: number;
}

/** Content-addressed block bytes kept on this device. */
export interface LocalBlockStore {
  /** The subset of `hashes` stored here. */
  hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>>;
  /** Stores bytes whose hash the caller has already verified. Idempotent. */
  putBlock(hash: BlockHash, bytes: Uint8Array): Promise<void>;
  getBlock(hash: BlockHash): Promise<Uint8Array | null>;
  /**
   * The same bytes as `getBlock`, by the cheapest way the store has for whole blocks read one
   * after another (serving peers, a zip). Optional: without it `getBlock` is used.
   */
  readBlock?(hash: BlockHash): Promise<Uint8Array | null>;
  /**
   * Nothing refers any more to bytes `readBlock` returned (served to a peer, every byte on the
   * wire): a store that reads into reused buffers may take the buffer back. Optional; bytes
   * never handed back are left to the garbage collector.
   */
  releaseRead?(bytes: Uint8Array): void;
  /**
   * Hashes `bytes` and stores them only if the hash is `hash`; resolves with the actual hash.
   * Optional: a store that can do both off the caller's thread offers it (the browser's block
   * writer), and the scheduler then uses it instead of its own hash and `putBlock`. The bytes
   * may be unusable afterwards (their buffer handed over).
   */
  putVerified?(hash: BlockHash, bytes: Uint8Array): Promise<BlockHash>;
  /**
   * Kept files use these stored blocks: a store that keeps some blocks where they may be
   * evicted (the cache of online-only files) moves them to where they are kept. Resolves with
   * those found gone meanwhile (evicted by the platform), which the engine fetches again.
   * Optional.
   */
  keepBlocks?(hashes: readonly BlockHash[]): Promise<BlockHash[]>;
}

/** Journal state of one namespace on this device: the file table and the cursors. */
export interface NamespaceState {
  /** Last journal entry folded into `files`. */
  cursor: Cursor;
  /** Last cursor at which every block of every live file was stored (what an advert may claim). */
  syncedCursor: Cursor;
  files: FileRecord[];
}

export interface SyncStateStore {
  load(ns: NamespaceId): Promise<NamespaceState>;
  /** Folds a page into the file table and moves the cursor, atomically (all or nothing). */
  applyPage(ns: NamespaceId, changed: FileRecord[], removed: FilePath[], cursor: Cursor): Promise<void>;
  setSyncedCursor(ns: NamespaceId, cursor: Cursor): Promise<void>;
}

export interface JournalReadOptions {
  limit?: number;
  waitSeconds?: number;
  signal?: AbortSignal;
}

/** Reads one namespace's journal; implementations validate every page (parseJournalPage). */
export interface JournalClient {
  readPage(cursor: Cursor, options?: JournalReadOptions): Promise<JournalPage>;
}

/** One block the engine wants, and the newest journal entry that needs it. */
export interface WantedBlock {
  ns: NamespaceId;
  hash: BlockHash;
  sjid: number;
  /** Expected length when known from the file layout (4 MiB cut), for progress only. */
  sizeHint: number;
  /**
   * A reader waits for the bytes from here (a multiple of REQUEST_FROM_ALIGNMENT, below the
   * block's size): a peer that takes range requests serves it before its queue, these bytes first.
   */
  from?: number;
}

/**
 * Anything that can hand over a block: the server, a WebRTC peer, a LAN peer through the
 * bridge. The scheduler treats them alike (WebTorrent's web seed is just another peer).
 */
export interface BlockSource {
  readonly id: string;
  readonly kind: 'server' | 'peer';
  /** Requests this source may have in flight at once. */
  readonly maxInFlight: number;
  /** Whether the source claims to hold this block (for a peer: its advert covers `sjid`). */
  canServe(want: WantedBlock): boolean;
  /** Measured recent throughput, when the source keeps one (weighs peers against each other). */
  bytesPerSecond?(): number;
  /** The block's bytes, unverified: the scheduler checks the hash. */
  fetchBlock(want: WantedBlock, signal: AbortSignal): Promise<Uint8Array>;
  /**
   * Many small blocks in one request, which takes one of `maxInFlight`. The map holds the
   * blocks that arrived (unverified); one left out is asked again later or elsewhere.
   * Rejects when the request as a whole failed. Sources without it are never batched.
   */
  fetchBlocks?(wants: readonly WantedBlock[], signal: AbortSignal): Promise<Map<BlockHash, Uint8Array>>;
  /**
   * The scheduler is done with bytes this source returned (stored, refused or dropped): a
   * source that read them into a reusable buffer may take it back.
   */
  release?(bytes: Uint8Array): void;
  /** Most blocks one fetchBlocks call may carry, read as a batch opens (a peer link has room for only so many requests). */
  readonly maxBatch?: number;
}

/** The server calls the uploader needs. */
export interface UploadApi {
  missingBlocks(hashes: BlockHash[]): Promise<BlockHash[]>;
  /** Sends a block: its bytes, or a Blob of them (a browser sends a stored block's disk-backed File). */
  putBlock(hash: BlockHash, body: Uint8Array | Blob): Promise<void>;
  /**
   * Sends a block unread (a slice of a source file) for the server to name: its SHA-256 as the
   * server computed it, or null when the server cannot (then hash and use putBlock). Optional.
   */
  putUnnamedBlock?(body: Blob): Promise<BlockHash | null>;
  /**
   * Sends 1 … MAX_BLOCK_BATCH blocks (MAX_BLOCK_BATCH_BYTES together) in one request, stored
   * all or none; null when the server has no batch uploads (then use putBlock). Optional:
   * an api without it sends every block with putBlock.
   */
  putBlocks?(blocks: readonly BlockUpload[]): Promise<BlockUploadBatchResponse | null>;
  /**
   * `{sjid}` on success, `{need}` when the server lacks blocks (nothing committed). A request
   * whose `parent` is not the path's live entry rejects with CommitConflictError (commit-conflict.ts).
   */
  commit(ns: NamespaceId, request: CommitRequest): Promise<{ sjid: number } | { need: BlockHash[] }>;
  /**
   * 1 … MAX_COMMIT_BATCH commits in one transaction: `{sjids}` in order, or `{need}` across all
   * of them (nothing committed); a stale `parent` rejects with CommitConflictError naming its index.
   */
  commitBatch(ns: NamespaceId, requests: readonly CommitRequest[]): Promise<{ sjids: number[] } | { need: BlockHash[] }>;
}
