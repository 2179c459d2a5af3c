import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { FileRecord, LocalBlockStore, NamespaceState, SyncStateStore } from '../src/engine/types.ts';
import type { BlockHash, Cursor, FilePath, NamespaceId } from '../src/protocol/index.ts';
import { asStorageError } from './storage-errors.ts';

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
  /** Block bytes as Blobs: Chromium keeps them on disk, so files assemble without copies. */
  blocks: { key: string; value: Blob };
  /** The live file table of every workspace, keyed [ns, path]. */
  files: { key: [string, string]; value: StoredFile; indexes: { byNamespace: string } };
  workspaces: { key: string; value: WorkspaceRecord };
}

export type NearsyncDb = IDBPDatabase<NearsyncSchema>;

export const DB_NAME = 'nearsync';
const DB_VERSION = 1;

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
      // Later versions add `if (oldVersion < 2) { … }` here; never edit a released step.
    },
  }).then((db) => {
    // A newer tab wants to upgrade the schema: step aside rather than block it.
    db.addEventListener('versionchange', () => db.close());
    return db;
  });
}

/** Never a block hash (not 64 hex digits), so no block can collide with it. */
const SPACE_PROBE_KEY = 'space-probe';

export class IdbBlockStore implements LocalBlockStore {
  constructor(private readonly db: NearsyncDb) {}

  async hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    const tx = this.db.transaction('blocks');
    const keys = await Promise.all(hashes.map((hash) => tx.store.getKey(hash)));
    await tx.done;
    return new Set(hashes.filter((_, i) => keys[i] !== undefined));
  }

  async putBlock(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    try {
      await this.db.put('blocks', new Blob([bytes as Uint8Array<ArrayBuffer>]), hash);
    } catch (error) {
      throw asStorageError(error);
    }
  }

  /**
   * Whether `bytes` more would fit now: writes and removes a probe value. Browsers' storage
   * estimates can be far from the quota they enforce, so only a real write tells.
   */
  async canStore(bytes: number): Promise<boolean> {
    try {
      await this.db.put('blocks', new Blob([new Uint8Array(bytes)]), SPACE_PROBE_KEY);
    } catch {
      return false;
    }
    await this.db.delete('blocks', SPACE_PROBE_KEY).catch(() => undefined);
    return true;
  }

  async getBlock(hash: BlockHash): Promise<Uint8Array | null> {
    const blob = await this.db.get('blocks', hash);
    return blob ? new Uint8Array(await blob.arrayBuffer()) : null;
  }

  getBlob(hash: BlockHash): Promise<Blob | undefined> {
    return this.db.get('blocks', hash);
  }
}

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
  constructor(private readonly db: NearsyncDb) {}

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
    const tx = this.db.transaction(['workspaces', 'files', 'blocks'], 'readwrite');
    const files = tx.objectStore('files');
    for (const key of await files.index('byNamespace').getAllKeys(ns)) void files.delete(key);
    void tx.objectStore('workspaces').delete(ns);
    const stillUsed = new Set<string>();
    for (const file of await files.getAll()) {
      if (file.ns !== ns) for (const hash of file.blocks) stillUsed.add(hash);
    }
    const blocks = tx.objectStore('blocks');
    for (const hash of await blocks.getAllKeys()) if (!stillUsed.has(hash)) void blocks.delete(hash);
    await tx.done;
  }
}

function toFileRecord(stored: StoredFile): FileRecord {
  return { path: stored.path, size: stored.size, mtime: stored.mtime, blocks: stored.blocks, sjid: stored.sjid };
}
