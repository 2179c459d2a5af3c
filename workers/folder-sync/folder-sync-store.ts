import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import type { FilePath, NamespaceId } from '../../src/protocol/index.ts';

/** The folder a workspace syncs with: the handle survives reloads (it is structured-clonable). */
export interface FolderLink {
  ns: NamespaceId;
  handle: FileSystemDirectoryHandle;
  linkedAt: number;
}

/**
 * What folder sync last wrote into the folder, or saw there and committed, for one path:
 * the file as the folder reported it then (size, lastModified) and the journal entry it is.
 * A file that still matches is unchanged since; one that does not was edited in the folder.
 * `sjid` 0: the local version went into the journal as a conflicted copy elsewhere, so the
 * file may be replaced by the journal's version. `deleted`: a deletion this device committed,
 * kept until the journal is read past it.
 */
export interface FolderRecord {
  path: FilePath;
  size: number;
  lastModified: number;
  sjid: number;
  deleted: boolean;
}

interface StoredRecord extends FolderRecord {
  ns: NamespaceId;
}

interface FolderSyncSchema extends DBSchema {
  links: { key: string; value: FolderLink };
  records: { key: [string, string]; value: StoredRecord; indexes: { byNamespace: string } };
}

/**
 * Folder sync's own IndexedDB database, apart from the sync state (`nearsync`): it has its own
 * life (a folder may be linked or let go at any time) and its own schema.
 */
export class FolderSyncStore {
  private constructor(private readonly db: IDBPDatabase<FolderSyncSchema>) {}

  static async open(): Promise<FolderSyncStore> {
    const db = await openDB<FolderSyncSchema>('nearsync-folder-sync', 1, {
      upgrade(database) {
        database.createObjectStore('links', { keyPath: 'ns' });
        const records = database.createObjectStore('records', { keyPath: ['ns', 'path'] });
        records.createIndex('byNamespace', 'ns');
      },
    });
    return new FolderSyncStore(db);
  }

  link(ns: NamespaceId): Promise<FolderLink | undefined> {
    return this.db.get('links', ns);
  }

  /** Links `ns` to a folder; the records of the folder it was linked to before go. */
  async setLink(link: FolderLink): Promise<void> {
    const tx = this.db.transaction(['links', 'records'], 'readwrite');
    await deleteRecordsOf(tx.objectStore('records'), link.ns);
    await tx.objectStore('links').put(link);
    await tx.done;
  }

  async unlink(ns: NamespaceId): Promise<void> {
    const tx = this.db.transaction(['links', 'records'], 'readwrite');
    await deleteRecordsOf(tx.objectStore('records'), ns);
    await tx.objectStore('links').delete(ns);
    await tx.done;
  }

  async records(ns: NamespaceId): Promise<Map<FilePath, FolderRecord>> {
    const stored = await this.db.getAllFromIndex('records', 'byNamespace', ns);
    return new Map(stored.map(({ ns: _ns, ...record }) => [record.path, record]));
  }

  /** Puts and removes records in one transaction (a request each costs about 0.2 ms; one transaction for many is cheap). */
  async save(ns: NamespaceId, put: readonly FolderRecord[], removed: readonly FilePath[]): Promise<void> {
    if (put.length === 0 && removed.length === 0) return;
    const tx = this.db.transaction('records', 'readwrite');
    for (const record of put) void tx.store.put({ ...record, ns });
    for (const path of removed) void tx.store.delete([ns, path]);
    await tx.done;
  }

  close(): void {
    this.db.close();
  }
}

async function deleteRecordsOf(store: { index(name: 'byNamespace'): { getAllKeys(key: string): Promise<[string, string][]> }; delete(key: [string, string]): Promise<void> }, ns: NamespaceId): Promise<void> {
  const keys = await store.index('byNamespace').getAllKeys(ns);
  await Promise.all(keys.map((key) => store.delete(key)));
}
