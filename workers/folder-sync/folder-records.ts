import type { FilePath, NamespaceId } from '../../src/protocol/index.ts';
import type { FolderRecord, FolderSyncStore } from './folder-sync-store.ts';
import { claim, trackedFolds, type FoldOwner } from './folder-twins.ts';

/** Records written together: a 10,000-file sync saves in a few transactions, not 10,000. */
const FLUSH_EVERY = 500;

/**
 * The folder records of one workspace in memory (every decision reads them), with changes
 * saved in batches. A crash before a save loses only the memory of recent writes: the next
 * start then finds those files unknown, sees the same bytes as the journal's and records them
 * again (FolderWriter), so nothing is uploaded or written twice.
 */
export class FolderRecords {
  private readonly changed = new Map<FilePath, FolderRecord | null>();
  /**
   * Who owns each folded path prefix among the tracked files (twin checks), built on first use
   * and then only added to: a stale owner (a file since removed or changed) makes a twin check
   * wait for the end of a walk, never decides it (see FolderTwins). Rebuilding it for every
   * look at one reported path would cost about a second at 100,000 files.
   */
  private folds: Map<string, FoldOwner> | null = null;

  private constructor(
    private readonly ns: NamespaceId,
    private readonly store: FolderSyncStore,
    private readonly records: Map<FilePath, FolderRecord>,
  ) {}

  static async load(ns: NamespaceId, store: FolderSyncStore): Promise<FolderRecords> {
    return new FolderRecords(ns, store, await store.records(ns));
  }

  /** Reads the records again (another tab synced the folder meanwhile): unsaved changes are saved first. */
  async reload(): Promise<void> {
    await this.flush();
    const stored = await this.store.records(this.ns);
    this.records.clear();
    for (const [path, record] of stored) this.records.set(path, record);
    this.folds = null;
  }

  /** The folded prefixes of the tracked files and their owners (see FolderTwins). */
  trackedFolds(): ReadonlyMap<string, FoldOwner> {
    this.folds ??= trackedFolds(this.records.values());
    return this.folds;
  }

  get(path: FilePath): FolderRecord | undefined {
    return this.records.get(path);
  }

  all(): IterableIterator<FolderRecord> {
    return this.records.values();
  }

  get size(): number {
    return this.records.size;
  }

  async put(record: FolderRecord): Promise<void> {
    this.records.set(record.path, record);
    this.changed.set(record.path, record);
    if (this.folds && !record.deleted) claim(this.folds, record.path, record.sjid);
    if (this.changed.size >= FLUSH_EVERY) await this.flush();
  }

  async remove(path: FilePath): Promise<void> {
    if (!this.records.delete(path)) return;
    this.changed.set(path, null);
    if (this.changed.size >= FLUSH_EVERY) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.changed.size === 0) return;
    const put: FolderRecord[] = [];
    const removed: FilePath[] = [];
    for (const [path, record] of this.changed) {
      if (record) put.push(record);
      else removed.push(path);
    }
    this.changed.clear();
    await this.store.save(this.ns, put, removed);
  }
}

/** The file in the folder is still what folder sync last wrote or committed there. */
export function matchesRecord(file: { size: number; lastModified: number }, record: FolderRecord | undefined): boolean {
  return record !== undefined && !record.deleted && file.size === record.size && file.lastModified === record.lastModified;
}
