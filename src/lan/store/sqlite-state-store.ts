import Database from 'better-sqlite3';
import type { FileRecord, NamespaceState, SyncStateStore } from '../../engine/types.ts';
import { isBlockHash, parseFilePath, type BlockHash, type Cursor, type FilePath, type NamespaceId } from '../../protocol/index.ts';

/**
 * What the folder holds at a path, as last written or committed by this daemon: the
 * journal entry it matches and the size and mtime the file had then. A file whose stat
 * still matches is unchanged (neither uploaded again nor taken for a local edit).
 */
export interface FolderRecord {
  path: FilePath;
  size: number;
  /** stat mtimeMs (fractional) right after the daemon wrote or read the file. */
  mtimeMs: number;
  blocks: BlockHash[];
  /** The journal entry whose content the file holds (for a tombstone: the deletion's entry). */
  sjid: number;
  /**
   * A tombstone: this daemon committed the file's deletion and the engine has not read that
   * far yet, so the older live entry must not be written back meanwhile.
   */
  deleted: boolean;
  /**
   * The CRC-32 of each block, where the daemon just read the bytes that hash to them (a file cut
   * in a scan): the folder's block index keeps them (block_crcs), they are not part of the row.
   */
  crcs?: readonly number[];
  /**
   * The daemon has just read the whole file through the page cache (cut it in a scan), so its
   * blocks are read back through the cache too; not part of the row (after a restart, unknown).
   */
  inPageCache?: boolean;
}

type Migration = (db: Database.Database) => void;

// Append only: never edit a released step.
const MIGRATIONS: Migration[] = [
  (db) =>
    db.exec(`
      CREATE TABLE workspace (ns TEXT PRIMARY KEY, cursor INTEGER NOT NULL, synced_cursor INTEGER NOT NULL);
      CREATE TABLE files (
        ns TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
        blocks TEXT NOT NULL, sjid INTEGER NOT NULL, PRIMARY KEY (ns, path)
      );
      CREATE TABLE folder_files (
        path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ms REAL NOT NULL,
        blocks TEXT NOT NULL, sjid INTEGER NOT NULL, deleted INTEGER NOT NULL
      );
    `),
  (db) => db.exec('CREATE TABLE block_crcs (hash TEXT PRIMARY KEY, crc INTEGER NOT NULL) WITHOUT ROWID'),
];

interface FileRow {
  path: string;
  size: number;
  mtime: number;
  blocks: string;
  sjid: number;
}

interface FolderRow {
  path: string;
  size: number;
  mtime_ms: number;
  blocks: string;
  sjid: number;
  deleted: number;
}

/**
 * The daemon's durable state in one SQLite file (WAL, synchronous=NORMAL): the engine's
 * cursors and file table, and the folder table. A page and its cursor commit in one
 * transaction, so a killed daemon resumes from a consistent point.
 *
 * NORMAL, not FULL: in WAL mode a commit then waits for no fsync (a FULL commit took about
 * 75 ms on the main thread under load, one per file written, issue 14). A killed process loses
 * nothing; a power cut may roll back the last commits, never tear one, and every row can be
 * derived again: a page is read again from the journal, and a lost folder record makes the
 * materialiser compare the file with its entry (the same bytes are recorded again, nothing is
 * uploaded or overwritten).
 */
export class SqliteStateStore implements SyncStateStore {
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  close(): void {
    this.db.close();
  }

  async load(ns: NamespaceId): Promise<NamespaceState> {
    const workspace = this.db.prepare('SELECT cursor, synced_cursor FROM workspace WHERE ns = ?').get(ns) as
      | { cursor: number; synced_cursor: number }
      | undefined;
    const rows = this.db.prepare('SELECT path, size, mtime, blocks, sjid FROM files WHERE ns = ?').all(ns) as FileRow[];
    return {
      cursor: workspace?.cursor ?? 0,
      syncedCursor: workspace?.synced_cursor ?? 0,
      files: rows.map((row) => ({
        path: parseFilePath(row.path),
        size: row.size,
        mtime: row.mtime,
        blocks: decodeBlocks(row.blocks),
        sjid: row.sjid,
      })),
    };
  }

  async applyPage(ns: NamespaceId, changed: FileRecord[], removed: FilePath[], cursor: Cursor): Promise<void> {
    const upsert = this.db.prepare(
      `INSERT INTO files (ns, path, size, mtime, blocks, sjid) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (ns, path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime, blocks = excluded.blocks, sjid = excluded.sjid`,
    );
    const remove = this.db.prepare('DELETE FROM files WHERE ns = ? AND path = ?');
    const setCursor = this.db.prepare(
      `INSERT INTO workspace (ns, cursor, synced_cursor) VALUES (?, ?, 0)
       ON CONFLICT (ns) DO UPDATE SET cursor = excluded.cursor`,
    );
    this.db.transaction(() => {
      for (const file of changed) upsert.run(ns, file.path, file.size, file.mtime, file.blocks.join(','), file.sjid);
      for (const path of removed) remove.run(ns, path);
      setCursor.run(ns, cursor);
    })();
  }

  async setSyncedCursor(ns: NamespaceId, cursor: Cursor): Promise<void> {
    this.db
      .prepare('UPDATE workspace SET synced_cursor = ? WHERE ns = ? AND synced_cursor < ?')
      .run(cursor, ns, cursor);
  }

  folderRecord(path: FilePath): FolderRecord | undefined {
    const row = this.db.prepare('SELECT path, size, mtime_ms, blocks, sjid, deleted FROM folder_files WHERE path = ?').get(path) as
      | FolderRow
      | undefined;
    return row ? toFolderRecord(row) : undefined;
  }

  folderRecords(): FolderRecord[] {
    return (this.db.prepare('SELECT path, size, mtime_ms, blocks, sjid, deleted FROM folder_files').all() as FolderRow[]).map(toFolderRecord);
  }

  /** Told of every folder record put (the record) or deleted (undefined): the folder's block index follows them. */
  onFolderRecord: ((path: FilePath, record: FolderRecord | undefined) => void) | null = null;

  putFolderRecord(record: FolderRecord): void {
    this.db
      .prepare(
        `INSERT INTO folder_files (path, size, mtime_ms, blocks, sjid, deleted) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ms = excluded.mtime_ms, blocks = excluded.blocks,
           sjid = excluded.sjid, deleted = excluded.deleted`,
      )
      .run(record.path, record.size, record.mtimeMs, record.blocks.join(','), record.sjid, record.deleted ? 1 : 0);
    this.onFolderRecord?.(record.path, record);
  }

  /** Runs `work` (folder record puts and deletes) as one transaction: one fsync, not one per record. */
  inOneTransaction(work: () => void): void {
    this.db.transaction(work)();
  }

  deleteFolderRecord(path: FilePath): void {
    this.db.prepare('DELETE FROM folder_files WHERE path = ?').run(path);
    this.onFolderRecord?.(path, undefined);
  }

  /** The kept CRC-32 of each folder block (block-crc-book.ts); a malformed row is skipped. */
  blockCrcs(): Map<BlockHash, number> {
    const crcs = new Map<BlockHash, number>();
    for (const row of this.db.prepare('SELECT hash, crc FROM block_crcs').all() as { hash: string; crc: number }[]) {
      if (isBlockHash(row.hash) && Number.isInteger(row.crc) && row.crc >= 0 && row.crc <= 0xffffffff) crcs.set(row.hash, row.crc);
    }
    return crcs;
  }

  putBlockCrcs(entries: ReadonlyArray<readonly [BlockHash, number]>): void {
    const put = this.db.prepare('INSERT INTO block_crcs (hash, crc) VALUES (?, ?) ON CONFLICT (hash) DO UPDATE SET crc = excluded.crc');
    this.db.transaction(() => {
      for (const [hash, crc] of entries) put.run(hash, crc);
    })();
  }

  deleteBlockCrcs(hashes: readonly BlockHash[]): void {
    const remove = this.db.prepare('DELETE FROM block_crcs WHERE hash = ?');
    this.db.transaction(() => {
      for (const hash of hashes) remove.run(hash);
    })();
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`state database is version ${version}, newer than this nearsync knows (${MIGRATIONS.length})`);
    }
    for (let step = version; step < MIGRATIONS.length; step++) {
      this.db.transaction(() => {
        MIGRATIONS[step](this.db);
        this.db.pragma(`user_version = ${step + 1}`);
      })();
    }
  }
}

function toFolderRecord(row: FolderRow): FolderRecord {
  return { path: parseFilePath(row.path), size: row.size, mtimeMs: row.mtime_ms, blocks: decodeBlocks(row.blocks), sjid: row.sjid, deleted: row.deleted === 1 };
}

function decodeBlocks(text: string): BlockHash[] {
  if (text === '') return [];
  return text.split(',').map((hash) => {
    if (!isBlockHash(hash)) throw new Error('state database holds a malformed block hash');
    return hash;
  });
}
