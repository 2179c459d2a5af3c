import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { FileRecord, LocalBlockStore, NamespaceState, SyncStateStore } from '../src/engine/types.ts';
import type { BlockHash, Cursor, FilePath, NamespaceId } from '../src/protocol/index.ts';
import { BlockStoreError } from '../src/engine/block-store-error.ts';
import type { BlockFiles } from './block-files.ts';
import { INLINE_BLOCK_MAX, InlineBlocks } from './inline-blocks.ts';
import { storageFullError } from './storage-errors.ts';

/** What this device remembers about a workspace it joined or created. */
export interface WorkspaceRecord {
  namespaceId: NamespaceId;
  name: string;
  token: string;
  shareLink: string | null;
  cursor: Cursor;
  syncedCursor: Cursor;
  addedAt: number;
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
  /** Blocks up to INLINE_BLOCK_MAX bytes, as bytes (`inline-blocks.ts`); larger ones are block files. */
  inlineBlocks: { key: string; value: Uint8Array };
  /** The live file table of every workspace, keyed [ns, path]. */
  files: { key: [string, string]; value: StoredFile; indexes: { byNamespace: string } };
  workspaces: { key: string; value: WorkspaceRecord };
}

export type NearsyncDb = IDBPDatabase<NearsyncSchema>;

export const DB_NAME = 'nearsync';
const DB_VERSION = 3;

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
      // Later versions add `if (oldVersion < 4) { … }` here; never edit a released step.
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

  constructor(
    private readonly db: NearsyncDb,
    private readonly files: BlockFiles,
  ) {
    this.inline = new InlineBlocks(db);
  }

  async hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
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
    const tx = this.db.transaction('blocks');
    const keys = await Promise.all(rest.map((hash) => tx.store.getKey(hash)));
    await tx.done;
    rest.forEach((hash, i) => {
      if (keys[i] !== undefined) found.add(hash);
    });
    return found;
  }

  async putBlock(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    try {
      if (bytes.length <= INLINE_BLOCK_MAX) await this.inline.put(hash, bytes);
      else await this.files.put(hash, bytes);
    } catch (error) {
      throw storageFullError(error) ?? new BlockStoreError(`could not store block ${hash.slice(0, 12)}…`, { cause: error });
    }
  }

  /**
   * Whether `bytes` more would fit now (a real reservation, released at once): browsers'
   * storage estimates can be far from the quota they enforce.
   */
  canStore(bytes: number): Promise<boolean> {
    return this.files.canHold(bytes);
  }

  async getBlock(hash: BlockHash): Promise<Uint8Array | null> {
    const inline = await this.inline.get(hash);
    if (inline) return inline;
    const blob = await this.getBlob(hash);
    return blob ? new Uint8Array(await blob.arrayBuffer()) : null;
  }

  /** The block as a disk-backed Blob (composes into a file by reference), if stored. */
  async getBlob(hash: BlockHash): Promise<Blob | undefined> {
    const inline = await this.inline.get(hash);
    if (inline) return new Blob([inline as Uint8Array<ArrayBuffer>]);
    return (await this.files.file(hash)) ?? (await this.db.get('blocks', hash));
  }

  /** Small blocks' hashes (for forgetting a workspace). */
  inlineHashes(): Promise<BlockHash[]> {
    return this.inline.list();
  }

  deleteInline(hashes: readonly BlockHash[]): Promise<void> {
    return this.inline.delete(hashes);
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
      moved += 1;
    }
    return moved;
  }
}

/** Block files looked up at once by hasBlocks. */
const HAS_BATCH = 256;

export class IdbStateStore implements SyncStateStore {
  constructor(private readonly db: NearsyncDb) {}

  async load(ns: NamespaceId): Promise<NamespaceState> {
    const tx = this.db.transaction(['workspaces', 'files']);
    const [workspace, files] = await Promise.all([
      tx.objectStore('workspaces').get(ns),
      tx.objectStore('files').index('byNamespace').getAll(ns),
    ]);
    await tx.done;
    return {
      cursor: workspace?.cursor ?? 0,
      syncedCursor: workspace?.syncedCursor ?? 0,
      files: files.map(toFileRecord),
    };
  }

  async applyPage(ns: NamespaceId, changed: FileRecord[], removed: FilePath[], cursor: Cursor): Promise<void> {
    const tx = this.db.transaction(['workspaces', 'files'], 'readwrite');
    const workspaces = tx.objectStore('workspaces');
    const files = tx.objectStore('files');
    const workspace = await workspaces.get(ns);
    if (!workspace) throw new Error(`workspace ${ns} is not known on this device`);
    for (const file of changed) void files.put({ ...file, ns });
    for (const path of removed) void files.delete([ns, path]);
    void workspaces.put({ ...workspace, cursor });
    await tx.done;
  }

  async setSyncedCursor(ns: NamespaceId, cursor: Cursor): Promise<void> {
    const tx = this.db.transaction('workspaces', 'readwrite');
    const workspace = await tx.store.get(ns);
    if (workspace && workspace.syncedCursor < cursor) await tx.store.put({ ...workspace, syncedCursor: cursor });
    await tx.done;
  }

  async file(ns: NamespaceId, path: string): Promise<FileRecord | undefined> {
    const stored = await this.db.get('files', [ns, path]);
    return stored ? toFileRecord(stored) : undefined;
  }
}

export class WorkspaceRegistry {
  constructor(
    private readonly db: NearsyncDb,
    private readonly files: BlockFiles,
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

  async setShareLink(ns: NamespaceId, shareLink: string): Promise<void> {
    const tx = this.db.transaction('workspaces', 'readwrite');
    const existing = await tx.store.get(ns);
    if (existing) await tx.store.put({ ...existing, shareLink });
    await tx.done;
  }

  /** Drops the workspace, its file table, and every block no other workspace still uses. */
  async forget(ns: NamespaceId): Promise<void> {
    const tx = this.db.transaction(['workspaces', 'files', 'blocks', 'inlineBlocks'], 'readwrite');
    const files = tx.objectStore('files');
    for (const key of await files.index('byNamespace').getAllKeys(ns)) void files.delete(key);
    void tx.objectStore('workspaces').delete(ns);
    const stillUsed = new Set<string>();
    for (const file of await files.getAll()) {
      if (file.ns !== ns) for (const hash of file.blocks) stillUsed.add(hash);
    }
    const blocks = tx.objectStore('blocks');
    for (const hash of await blocks.getAllKeys()) if (!stillUsed.has(hash)) void blocks.delete(hash);
    const inline = tx.objectStore('inlineBlocks');
    for (const hash of await inline.getAllKeys()) if (!stillUsed.has(hash)) void inline.delete(hash);
    await tx.done;
    for (const hash of await this.files.list()) if (!stillUsed.has(hash)) await this.files.delete(hash);
  }
}

function toFileRecord(stored: StoredFile): FileRecord {
  return { path: stored.path, size: stored.size, mtime: stored.mtime, blocks: stored.blocks, sjid: stored.sjid };
}
