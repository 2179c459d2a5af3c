import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { FileRecord, LocalBlockStore, NamespaceState, SyncStateStore } from '../src/engine/types.ts';
import type { BlockHash, Cursor, FilePath, NamespaceId } from '../src/protocol/index.ts';
import { parseKeepSettings, type KeepSetting } from '../src/engine/keep-policy.ts';
import { BlockStoreError } from '../src/engine/block-store-error.ts';
import { BlockBufferPool } from '../src/engine/block-buffers.ts';
import { foldFilePages, snapshotPages, worthCompacting, type FilePage } from '../src/engine/file-page-log.ts';
import type { BlockFiles } from './block-files.ts';
import type { BlockWriteResult, BlockWriter } from './block-writer.ts';
import type { BlockCrc, BlockCrcs } from './block-crcs.ts';
import type { CacheBlocks } from './cache-blocks.ts';
import { INLINE_BLOCK_MAX, InlineBlocks, type PackIndexRecord } from './inline-blocks.ts';
import { storageFullError } from './storage-errors.ts';
import { sha256 } from './web-crypto.ts';

/** What this device remembers about a workspace it joined or created. */
export interface WorkspaceRecord {
  namespaceId: NamespaceId;
  name: string;
  token: string;
  shareLink: string | null;
  cursor: Cursor;
  syncedCursor: Cursor;
  addedAt: number;
  /**
   * Which folders this device keeps and which are online only (keep-policy.ts). Absent until
   * the user chose (a join asks first when the workspace will not fit); empty: keep all.
   */
  keep?: KeepSetting[];
  /** Bytes of blocks kept for online-only files before the least recently used go (default 1 GiB). */
  cacheLimitBytes?: number;
}

interface StoredFile extends FileRecord {
  ns: NamespaceId;
}

interface NearsyncSchema extends DBSchema {
  /**
   * Block bytes as Blobs, as version 1 stored them: read, and moved into block files
   * (`block-files.ts`) in the background; nothing new is written here since version 2.
   */
  blocks: { key: string; value: Blob };
  /** Small blocks one per value, as version 3 stored them: read where they are; new ones go in packs. */
  inlineBlocks: { key: string; value: Uint8Array };
  /**
   * The file table as versions 1–3 kept it, one record per live file, keyed [ns, path]: read
   * as the base of `filePages` until the workspace's first compaction removes it.
   */
  files: { key: [string, string]; value: StoredFile; indexes: { byNamespace: string } };
  /**
   * The file table as a log of journal pages and snapshots (`file-page-log.ts`), keyed
   * [ns, cursor, 0 page | 1 snapshot, part].
   */
  filePages: { key: [string, number, number, number]; value: FilePage };
  /** Small blocks written together, as one value of concatenated bytes (`inline-blocks.ts`). */
  blockPacks: { key: string; value: Uint8Array };
  /** Which blocks each pack holds, and where: read whole at start (the bytes are not). */
  packIndex: { key: string; value: PackIndexRecord };
  workspaces: { key: string; value: WorkspaceRecord };
}

export type NearsyncDb = IDBPDatabase<NearsyncSchema>;

export const DB_NAME = 'nearsync';
const DB_VERSION = 4;

/** Opens the device database, upgrading older schema versions step by step. */
export function openNearsyncDb(): Promise<NearsyncDb> {
  return openDB<NearsyncSchema>(DB_NAME, DB_VERSION, {
    upgrade(db, oldVersion) {
      if (oldVersion < 1) {
        db.createObjectStore('blocks');
        const files = db.createObjectStore('files', { keyPath: ['ns', 'path'] });
        files.createIndex('byNamespace', 'ns');
        db.createObjectStore('workspaces', { keyPath: 'namespaceId' });
      }
      // Version 2 keeps new blocks in the origin private file system (block-files.ts). The
      // stores stay as they are: blocks of version 1 remain readable where they are until
      // moved. The version still changes so that a tab running version 1 code, which would
      // neither see nor remove those files, can no longer open the database.
      if (oldVersion < 3) {
        // Small blocks move out of block files into IndexedDB values (version 2's small
        // block files stay readable where they are).
        db.createObjectStore('inlineBlocks');
      }
      if (oldVersion < 4) {
        // One stored value per journal page and per pack of small blocks instead of one per
        // file and per block (the stores of version 3 stay readable until compacted away).
        db.createObjectStore('filePages');
        db.createObjectStore('blockPacks');
        db.createObjectStore('packIndex');
      }
      // Later versions add `if (oldVersion < 5) { … }` here; never edit a released step.
    },
  }).then((db) => {
    // A newer tab wants to upgrade the schema: step aside rather than block it.
    db.addEventListener('versionchange', () => db.close());
    return db;
  });
}

/**
 * The device's blocks: small ones as IndexedDB values (`inline-blocks.ts`), the rest as files
 * in the origin private file system, with the Blob values of schema version 1 still read
 * until `moveLegacyBlocks` has moved them over.
 */
export class IdbBlockStore implements LocalBlockStore {
  private readonly inline: InlineBlocks;
  private legacyKeys: Promise<Set<BlockHash>> | null = null;
  /** Whether a block belongs in the evictable cache (only online-only files use it): set by the worker. */
  private cacheOnly: (hash: BlockHash) => boolean = () => false;
  /**
   * Buffers that readBlock reads block files into, taken back by releaseRead once a peer was
   * sent every byte: a fresh zeroed 4 MiB buffer per block served cost its allocation and page
   * faults on the serving thread, and left the collector 4 MiB per block. Its own pool, not the
   * receiving one: callers that never hand buffers back (a zip) only leave them to the collector.
   */
  private readonly readBuffers = new BlockBufferPool(undefined, 4);

  constructor(
    private readonly db: NearsyncDb,
    private readonly files: BlockFiles,
    /** Hashes and writes large fetched blocks off this thread (putVerified); none: done here. */
    private readonly writer: BlockWriter | null = null,
    /** Blocks read for online-only files, in a bucket the browser may clear; none: they stay here (bounded all the same). */
    private readonly cache: CacheBlocks | null = null,
    /** CRC-32s of block files, for zips (block-crcs.ts); none: a zip computes them every time. */
    private readonly crcs: BlockCrcs | null = null,
  ) {
    this.inline = new InlineBlocks(db);
  }

  /** Tells the store which blocks go to the evictable cache rather than the kept store. */
  routeToCache(cacheOnly: (hash: BlockHash) => boolean): void {
    this.cacheOnly = cacheOnly;
  }

  /** Kept store first, then the cache (a cleared cache is simply a miss). */
  async hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    const found = await this.hasKept(hashes);
    if (!this.cache || found.size === hashes.length) return found;
    for (const hash of await this.cache.has(hashes.filter((hash) => !found.has(hash)))) found.add(hash);
    return found;
  }

  /**
   * Blocks that kept files use now: any that sit in the evictable cache move to the kept
   * store (copied, then removed from the cache), so the browser clearing the cache never
   * takes a kept file's block.
   */
  async keepBlocks(hashes: readonly BlockHash[]): Promise<BlockHash[]> {
    if (!this.cache || hashes.length === 0) return [];
    const kept = await this.hasKept(hashes);
    const notKept = hashes.filter((hash) => !kept.has(hash));
    const cached = await this.cache.has(notKept);
    // Neither here nor in the cache: the browser cleared the cache meanwhile.
    const gone = notKept.filter((hash) => !cached.has(hash));
    for (const hash of cached) {
      const bytes = await this.cache.read(hash);
      if (!bytes) {
        gone.push(hash);
        continue;
      }
      await this.putKept(hash, bytes);
      await this.cache.delete([hash]);
    }
    return gone;
  }

  private async hasKept(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    const found = hashes.length > 0 ? await this.inline.has(hashes) : new Set<BlockHash>();
    const notInline = hashes.filter((hash) => !found.has(hash));
    for (let start = 0; start < notInline.length; start += HAS_BATCH) {
      const batch = notInline.slice(start, start + HAS_BATCH);
      const present = await Promise.all(batch.map((hash) => this.files.has(hash)));
      batch.forEach((hash, i) => {
        if (present[i]) found.add(hash);
      });
    }
    const rest = hashes.filter((hash) => !found.has(hash));
    if (rest.length === 0) return found;
    // Version 1's Blob values, listed once (moveLegacyBlocks empties the store): a join asks
    // about every block it lacks, and one lookup each was 10,000 requests for 10,000 files.
    this.legacyKeys ??= this.db.getAllKeys('blocks').then((keys) => new Set(keys as BlockHash[]));
    const legacy = await this.legacyKeys;
    for (const hash of rest) if (legacy.has(hash)) found.add(hash);
    return found;
  }

  async putBlock(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    if (this.cache && this.cacheOnly(hash)) {
      try {
        await this.cache.put(hash, bytes);
        return;
      } catch (error) {
        if (storageFullError(error)) throw storedError(hash, error);
        // The cache cannot take it: the kept store can (the engine's cache limit still applies).
      }
    }
    await this.putKept(hash, bytes);
  }

  private async putKept(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    try {
      if (bytes.length <= INLINE_BLOCK_MAX) await this.inline.put(hash, bytes);
      else await this.files.put(hash, bytes);
    } catch (error) {
      throw storedError(hash, error);
    }
  }

  /**
   * Hashes and stores a fetched block (LocalBlockStore.putVerified): a large block in a pooled
   * buffer goes to the block writer, which does both on its own thread; others here.
   */
  async putVerified(hash: BlockHash, bytes: Uint8Array): Promise<BlockHash> {
    if (this.writer && bytes.length > INLINE_BLOCK_MAX && this.writer.accepts(bytes)) {
      const length = bytes.length;
      let written: BlockWriteResult;
      try {
        written = await this.writer.hashAndPut(hash, bytes, this.cache && this.cacheOnly(hash) ? 'cache' : 'kept');
      } catch (error) {
        throw storedError(hash, error);
      }
      if (written.actual === hash) {
        if (written.storedIn === 'cache') this.cache?.noteStored(hash);
        else this.files.noteStored(hash);
        if (written.crc32 !== undefined) this.crcs?.remember(hash, { crc32: written.crc32, size: length });
      }
      return written.actual;
    }
    const actual = await sha256(bytes);
    if (actual === hash) await this.putBlock(hash, bytes);
    return actual;
  }

  /**
   * Whether `bytes` more would fit now (a real reservation, released at once): browsers'
   * storage estimates can be far from the quota they enforce.
   */
  canStore(bytes: number): Promise<boolean> {
    return this.files.canHold(bytes);
  }

  async getBlock(hash: BlockHash): Promise<Uint8Array | null> {
    const file = await this.blockFile(hash);
    if (file) return new Uint8Array(await file.arrayBuffer());
    const inline = await this.inline.get(hash);
    if (inline) return inline;
    // Another tab's block file, or a version 1 Blob, or a cache block.
    const blob = (await this.files.file(hash)) ?? (await this.db.get('blocks', hash)) ?? (await this.cache?.file(hash));
    return blob ? new Uint8Array(await blob.arrayBuffer()) : null;
  }

  /** Bytes readBlock returned are no longer used (LocalBlockStore.releaseRead). */
  releaseRead(bytes: Uint8Array): void {
    this.readBuffers.give(bytes);
  }

  /**
   * The block's bytes by the fastest way there is: a block file through a read-only sync
   * access handle (BlockFiles.read), else as getBlock. For reading many blocks in a row (a zip,
   * serving peers).
   */
  async readBlock(hash: BlockHash): Promise<Uint8Array | null> {
    if (await this.files.has(hash)) {
      try {
        const bytes = await this.files.read(hash, this.readBuffers);
        if (bytes) return bytes;
      } catch {
        // Locked or unsupported: the File path below still reads it.
      }
    }
    return this.getBlock(hash);
  }

  /**
   * The CRC records of those blocks that are block files and have one (one look-up for a whole
   * file's blocks; small blocks are read anyway, so they are not asked about).
   */
  async blockCrcs(hashes: readonly BlockHash[]): Promise<Map<BlockHash, BlockCrc>> {
    if (!this.crcs) return new Map();
    const inFiles: BlockHash[] = [];
    for (const hash of new Set(hashes)) if (await this.files.has(hash)) inFiles.push(hash);
    return inFiles.length > 0 ? this.crcs.get(inFiles) : new Map();
  }

  /** Small blocks kept in IndexedDB packs, each pack read once (InlineBlocks.getMany); others left out. */
  inlineBlocks(hashes: readonly BlockHash[]): Promise<Map<BlockHash, Uint8Array>> {
    return this.inline.getMany(hashes);
  }

  /** Whether a block of this length is a block file, whose CRC is worth keeping (rememberCrc). */
  keepsCrcOf(length: number): boolean {
    return this.crcs !== null && length > INLINE_BLOCK_MAX;
  }

  /** Keeps the CRC of a block file's bytes, checked against its hash by the caller. */
  rememberCrc(hash: BlockHash, record: BlockCrc): void {
    if (this.keepsCrcOf(record.size)) this.crcs?.remember(hash, record);
  }

  /** The block as a disk-backed Blob (composes into a file by reference), if stored. */
  async getBlob(hash: BlockHash): Promise<Blob | undefined> {
    const file = await this.blockFile(hash);
    if (file) return file;
    const inline = await this.inline.get(hash);
    if (inline) return new Blob([inline as Uint8Array<ArrayBuffer>]);
    return (await this.files.file(hash)) ?? (await this.db.get('blocks', hash)) ?? (await this.cache?.file(hash)) ?? undefined;
  }

  /** The block file of a block the file index lists (no file-system lookup for the others). */
  private async blockFile(hash: BlockHash): Promise<File | null> {
    return (await this.files.has(hash)) ? this.files.file(hash) : null;
  }

  /** Small blocks' hashes (for forgetting a workspace). */
  inlineHashes(): Promise<BlockHash[]> {
    return this.inline.list();
  }

  deleteInline(hashes: readonly BlockHash[]): Promise<void> {
    return this.inline.delete(hashes);
  }

  /**
   * Removes blocks (evicted cache blocks of online-only files), wherever they are stored.
   * A block already gone is no error.
   */
  async deleteBlocks(hashes: readonly BlockHash[]): Promise<void> {
    if (hashes.length === 0) return;
    await this.cache?.delete(hashes);
    const inline = await this.inline.has(hashes);
    if (inline.size > 0) await this.inline.delete([...inline]);
    const inFiles = hashes.filter((hash) => !inline.has(hash));
    for (const hash of inFiles) await this.files.delete(hash);
    await this.crcs?.forget(inFiles);
  }

  /** Drops the CRC records of block files removed by others (forgetting a workspace). */
  forgetCrcs(hashes: readonly BlockHash[]): Promise<void> {
    return this.crcs?.forget(hashes) ?? Promise.resolve();
  }

  /**
   * Moves the blocks schema version 1 kept as Blob values into block files, one at a
   * time; each leaves IndexedDB only once its file is complete, so none is ever lost.
   */
  async moveLegacyBlocks(): Promise<number> {
    let moved = 0;
    for (const hash of await this.db.getAllKeys('blocks')) {
      const blob = await this.db.get('blocks', hash);
      if (blob) await this.files.put(hash as BlockHash, new Uint8Array(await blob.arrayBuffer()));
      await this.db.delete('blocks', hash);
      void this.legacyKeys?.then((keys) => keys.delete(hash as BlockHash));
      moved += 1;
    }
    return moved;
  }
}

function storedError(hash: BlockHash, error: unknown): Error {
  return storageFullError(error) ?? new BlockStoreError(`could not store block ${hash.slice(0, 12)}…`, { cause: error });
}

/** Block files looked up at once by hasBlocks. */
const HAS_BATCH = 256;

/** What the state store knows of a workspace's page log since it last read it whole. */
interface LogStats {
  storedRecords: number;
  liveFiles: number;
}

export class IdbStateStore implements SyncStateStore {
  private readonly stats = new Map<NamespaceId, LogStats>();

  constructor(private readonly db: NearsyncDb) {}

  async load(ns: NamespaceId): Promise<NamespaceState> {
    const tx = this.db.transaction(['workspaces', 'files', 'filePages']);
    const [workspace, folded] = await Promise.all([tx.objectStore('workspaces').get(ns), readFileTable(tx, ns)]);
    await tx.done;
    this.stats.set(ns, { storedRecords: folded.storedRecords, liveFiles: folded.files.size });
    return {
      cursor: workspace?.cursor ?? 0,
      syncedCursor: workspace?.syncedCursor ?? 0,
      files: [...folded.files.values()],
    };
  }

  async applyPage(ns: NamespaceId, changed: FileRecord[], removed: FilePath[], cursor: Cursor): Promise<void> {
    const tx = this.db.transaction(['workspaces', 'filePages'], 'readwrite');
    const workspaces = tx.objectStore('workspaces');
    const workspace = await workspaces.get(ns);
    if (!workspace) throw new Error(`workspace ${ns} is not known on this device`);
    const page: FilePage = { kind: 'page', cursor, files: changed.map(toFileRecord), removed: [...removed] };
    void tx.objectStore('filePages').put(page, [ns, cursor, PAGE, 0]);
    void workspaces.put({ ...workspace, cursor });
    await tx.done;
    const stats = this.stats.get(ns);
    if (!stats) return;
    stats.storedRecords += changed.length + removed.length;
    // An estimate (a changed file may have been live already): compaction counts exactly.
    stats.liveFiles = Math.max(0, stats.liveFiles + changed.length - removed.length);
    if (worthCompacting(stats.storedRecords, stats.liveFiles)) await this.compact(ns);
  }

  /** Folds the workspace's pages into one snapshot, in one transaction with the removal of what it replaces. */
  async compact(ns: NamespaceId): Promise<void> {
    const tx = this.db.transaction(['files', 'filePages'], 'readwrite');
    const pages = tx.objectStore('filePages');
    const folded = await readFileTable(tx, ns);
    const keys = await pages.getAllKeys(namespaceRange(ns));
    const cursor = keys.reduce((highest, key) => Math.max(highest, key[1]), folded.snapshotCursor) as Cursor;
    for (const key of keys) void pages.delete(key);
    const legacy = tx.objectStore('files');
    for (const key of await legacy.index('byNamespace').getAllKeys(ns)) void legacy.delete(key);
    snapshotPages(folded.files.values(), cursor).forEach((part, i) => void pages.put(part, [ns, cursor, SNAPSHOT, i]));
    await tx.done;
    this.stats.set(ns, { storedRecords: folded.files.size, liveFiles: folded.files.size });
  }

  async setSyncedCursor(ns: NamespaceId, cursor: Cursor): Promise<void> {
    const tx = this.db.transaction('workspaces', 'readwrite');
    const workspace = await tx.store.get(ns);
    if (workspace && workspace.syncedCursor < cursor) await tx.store.put({ ...workspace, syncedCursor: cursor });
    await tx.done;
  }

  /** One file's record, read from the whole table: for callers without a running workspace. */
  async file(ns: NamespaceId, path: string): Promise<FileRecord | undefined> {
    const tx = this.db.transaction(['files', 'filePages']);
    const folded = await readFileTable(tx, ns);
    await tx.done;
    return folded.files.get(path as FilePath);
  }
}

const PAGE = 0;
const SNAPSHOT = 1;

/** Every filePages key of `ns` ([ns, …] sorts below [ns, []]: arrays sort after numbers). */
function namespaceRange(ns: NamespaceId): IDBKeyRange {
  return IDBKeyRange.bound([ns], [ns, []]);
}

/** A transaction holding the two stores a file table is read from. */
interface FileTableStores {
  objectStore(name: 'files' | 'filePages'): unknown;
}

type Reader<T> = { getAll(query: string | IDBKeyRange): Promise<T[]> };

/** The live files of `ns`: the version 3 records as the base, then the page log over them. */
async function readFileTable(tx: FileTableStores, ns: NamespaceId) {
  const legacyFiles = (tx.objectStore('files') as { index(name: 'byNamespace'): Reader<StoredFile> }).index('byNamespace');
  const filePages = tx.objectStore('filePages') as Reader<FilePage>;
  const [legacy, pages] = await Promise.all([legacyFiles.getAll(ns), filePages.getAll(namespaceRange(ns))]);
  const base: FilePage[] = legacy.length > 0 ? [{ kind: 'snapshot', cursor: 0 as Cursor, files: legacy.map(toFileRecord), removed: [] }] : [];
  return foldFilePages([...base, ...pages]);
}

export class WorkspaceRegistry {
  constructor(
    private readonly db: NearsyncDb,
    private readonly files: BlockFiles,
    private readonly blocks: IdbBlockStore,
  ) {}

  list(): Promise<WorkspaceRecord[]> {
    return this.db.getAll('workspaces');
  }

  get(ns: NamespaceId): Promise<WorkspaceRecord | undefined> {
    return this.db.get('workspaces', ns);
  }

  async remember(record: Omit<WorkspaceRecord, 'cursor' | 'syncedCursor' | 'addedAt'>): Promise<void> {
    const tx = this.db.transaction('workspaces', 'readwrite');
    const existing = await tx.store.get(record.namespaceId);
    await tx.store.put({
      cursor: 0,
      syncedCursor: 0,
      addedAt: Date.now(),
      ...existing,
      ...record,
    });
    await tx.done;
  }

  /** The keep settings of a workspace: undefined while the user has not chosen. */
  async keepSettings(ns: NamespaceId): Promise<KeepSetting[] | undefined> {
    const keep = (await this.db.get('workspaces', ns))?.keep;
    return keep === undefined ? undefined : parseKeepSettings(keep);
  }

  async setKeepSettings(ns: NamespaceId, keep: KeepSetting[]): Promise<void> {
    const tx = this.db.transaction('workspaces', 'readwrite');
    const existing = await tx.store.get(ns);
    if (existing) await tx.store.put({ ...existing, keep: parseKeepSettings(keep) });
    await tx.done;
  }

  async setCacheLimit(ns: NamespaceId, cacheLimitBytes: number): Promise<void> {
    const tx = this.db.transaction('workspaces', 'readwrite');
    const existing = await tx.store.get(ns);
    if (existing) await tx.store.put({ ...existing, cacheLimitBytes });
    await tx.done;
  }

  async setShareLink(ns: NamespaceId, shareLink: string): Promise<void> {
    const tx = this.db.transaction('workspaces', 'readwrite');
    const existing = await tx.store.get(ns);
    if (existing) await tx.store.put({ ...existing, shareLink });
    await tx.done;
  }

  /** Drops the workspace, its file table, and every block no other workspace still uses. */
  async forget(ns: NamespaceId): Promise<void> {
    const tx = this.db.transaction(['workspaces', 'files', 'filePages', 'blocks', 'inlineBlocks'], 'readwrite');
    const files = tx.objectStore('files');
    for (const key of await files.index('byNamespace').getAllKeys(ns)) void files.delete(key);
    const pages = tx.objectStore('filePages');
    for (const key of await pages.getAllKeys(namespaceRange(ns))) void pages.delete(key);
    const workspaces = tx.objectStore('workspaces');
    void workspaces.delete(ns);
    const stillUsed = new Set<string>();
    for (const other of await workspaces.getAllKeys()) {
      if (other === ns) continue;
      for (const file of (await readFileTable(tx, other as NamespaceId)).files.values()) for (const hash of file.blocks) stillUsed.add(hash);
    }
    const blocks = tx.objectStore('blocks');
    for (const hash of await blocks.getAllKeys()) if (!stillUsed.has(hash)) void blocks.delete(hash);
    await tx.done;
    const inline = await this.blocks.inlineHashes();
    await this.blocks.deleteInline(inline.filter((hash) => !stillUsed.has(hash)));
    const unused = (await this.files.list()).filter((hash) => !stillUsed.has(hash));
    for (const hash of unused) await this.files.delete(hash);
    await this.blocks.forgetCrcs(unused);
  }
}

function toFileRecord(stored: FileRecord): FileRecord {
  return { path: stored.path, size: stored.size, mtime: stored.mtime, blocks: stored.blocks, sjid: stored.sjid };
}
