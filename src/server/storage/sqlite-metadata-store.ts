import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { LAN_KEY_BYTES, type BlockHash, type CommitRequest, type DeletedFile, type DeletedFilesResponse, type FilePath, type HistoryResponse, type JournalEntry, type NamespaceId, type VersionEntry } from '../../protocol/index.ts';
import { HISTORY_BLOCK_BUDGET, PAGE_BLOCK_BUDGET, commitOne, type CommitBatchResult, type CommitResult, type JournalRead, type MetadataStore, type NewWorkspace, type Workspace } from './metadata-store.ts';
import { migrateSqlite } from './sqlite-migrations.ts';
import { CommitGate } from './commit-gate.ts';
import { tryLockFile } from './lock-file.ts';
import type { BeforeCommitWrite, GcMetadata, GcSession, JournalHeads } from './gc-metadata.ts';

export { MIGRATIONS } from './sqlite-migrations.ts';

/** Where the metadata database of a data directory lives; creates the directory. */
export function sqliteDatabaseFile(dataDir: string): string {
  mkdirSync(dataDir, { recursive: true });
  return join(dataDir, 'nearsync.db');
}

/** Opens the database file with the settings every connection of the server uses. */
export function openSqliteDatabase(file: string): Database.Database {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // FULL: an acknowledged commit survives power loss (clients move their cursors past it).
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  return db;
}

interface JournalRow {
  sjid: number;
  path: string;
  size: number;
  mtime: number;
  blocks: Buffer;
  deleted: number;
}

interface DeletionRow {
  sjid: number;
  path: string;
  committed_at: number;
  device: string | null;
}

interface VersionRow extends JournalRow {
  device: string | null;
  committed_at: number;
}

/** Journal rows read per step of a GC scan: the event loop gets a turn between steps. */
const GC_SCAN_PAGE = 2_000;

export class SqliteMetadataStore implements MetadataStore, GcMetadata {
  private readonly db: Database.Database;
  /**
   * Commits (shared) against GC batches (exclusive). In process only: a SQLite database is
   * served by one process (several instances need PostgreSQL), so this covers every commit.
   */
  private readonly gate = new CommitGate();
  /** Grows before each GC batch deletes blocks (see BeforeCommitWrite). */
  private gcGeneration = 0;
  private gcPassRunning = false;
  /** `DATA_DIR/gc.lock`: one pass at a time, also against another process on the same data dir. */
  private readonly gcLockFile: string;
  private readonly stmts: ReturnType<typeof prepareStatements>;
  private readonly commitTx: Database.Transaction<(ns: NamespaceId, requests: readonly CommitRequest[]) => CommitBatchResult>;

  private constructor(file: string) {
    this.gcLockFile = join(dirname(file), 'gc.lock');
    this.db = openSqliteDatabase(file);
    try {
      migrateSqlite(this.db);
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.stmts = prepareStatements(this.db);
    this.commitTx = this.db.transaction((ns: NamespaceId, requests: readonly CommitRequest[]): CommitBatchResult => {
      const s = this.stmts;
      const head = s.head.get(ns) as number | undefined;
      if (head === undefined) return { ok: false, reason: 'no_namespace' };
      const sjids: number[] = [];
      const now = Date.now();
      for (const [index, request] of requests.entries()) {
        const sjid = head + 1 + index;
        // Earlier elements of the batch already changed files_live (and the journal): the rules see them.
        const live = s.liveFile.get(ns, request.path) as number | undefined;
        if (request.parent !== undefined && request.parent !== (live ?? 0)) {
          throw new Conflict(index, live === undefined ? null : toVersion(s.entryAt.get(ns, live) as VersionRow));
        }
        if (request.deleted) {
          if (live === undefined) throw new NotLive(index);
          s.deleteLive.run(ns, request.path);
        } else {
          s.upsertLive.run(ns, request.path, sjid);
        }
        // The version this entry replaces starts its retention period (block GC).
        if (live !== undefined) s.supersede.run(now, ns, live);
        const digests = request.blocks.map((hash) => Buffer.from(hash, 'hex'));
        s.insertEntry.run(ns, sjid, request.path, request.size, request.mtime, Buffer.concat(digests), request.deleted ? 1 : 0, now, request.device ?? null);
        for (const digest of digests) s.addBlockRef.run(ns, digest, sjid);
        sjids.push(sjid);
      }
      s.setHead.run(head + requests.length, ns);
      return { ok: true, sjids };
    });
  }

  /** Opens (creating if needed) `${dataDir}/nearsync.db` and brings its schema up to date. */
  static open(dataDir: string): SqliteMetadataStore {
    return new SqliteMetadataStore(sqliteDatabaseFile(dataDir));
  }

  async createWorkspace(w: NewWorkspace): Promise<void> {
    const now = Date.now();
    this.db.transaction(() => {
      this.stmts.insertWorkspace.run(w.namespaceId, w.name, now);
      this.stmts.insertMember.run(w.tokenHash, w.namespaceId, now);
      this.stmts.insertInvite.run(w.inviteHash, w.namespaceId, now);
    }).immediate();
  }

  async joinByInviteHash(inviteHash: string, tokenHash: string): Promise<Workspace | null> {
    return this.db.transaction((): Workspace | null => {
      const ns = this.stmts.liveInvite.get(inviteHash) as NamespaceId | undefined;
      if (ns === undefined) return null;
      this.stmts.insertMember.run(tokenHash, ns, Date.now());
      return this.workspaceSync(ns);
    }).immediate();
  }

  async rotateInvite(ns: NamespaceId, inviteHash: string): Promise<void> {
    const now = Date.now();
    this.db.transaction(() => {
      this.stmts.revokeInvites.run(now, ns);
      this.stmts.insertInvite.run(inviteHash, ns, now);
    }).immediate();
  }

  async authenticate(tokenHash: string): Promise<{ namespaceId: NamespaceId } | null> {
    const ns = this.stmts.member.get(tokenHash) as NamespaceId | undefined;
    return ns === undefined ? null : { namespaceId: ns };
  }

  async getWorkspace(ns: NamespaceId): Promise<Workspace | null> {
    return this.workspaceSync(ns);
  }

  async readJournal(ns: NamespaceId, afterSjid: number, limit: number): Promise<JournalRead> {
    const entries: JournalEntry[] = [];
    let blockCount = 0;
    let more = false;
    for (const row of this.stmts.readJournal.iterate(ns, afterSjid, limit + 1) as IterableIterator<JournalRow>) {
      const hashes = row.blocks.length / 32;
      if (entries.length === limit || (entries.length > 0 && blockCount + hashes > PAGE_BLOCK_BUDGET)) {
        more = true;
        break;
      }
      blockCount += hashes;
      entries.push(toEntry(row));
    }
    return { entries, more };
  }

  async headSjid(ns: NamespaceId): Promise<number> {
    return (this.stmts.head.get(ns) as number | undefined) ?? 0;
  }

  async commit(ns: NamespaceId, request: CommitRequest): Promise<CommitResult> {
    return commitOne(this, ns, request);
  }

  async commitBatch(ns: NamespaceId, requests: readonly CommitRequest[], beforeWrite?: BeforeCommitWrite): Promise<CommitBatchResult> {
    return this.gate.shared(async () => {
      await beforeWrite?.(this.gcGeneration);
      try {
        return this.commitTx.immediate(ns, requests);
      } catch (err) {
        // Thrown inside the transaction so that better-sqlite3 rolls every element back.
        if (err instanceof NotLive) return { ok: false, reason: 'not_live', index: err.index };
        if (err instanceof Conflict) return { ok: false, reason: 'conflict', index: err.index, current: err.current };
        throw err;
      }
    });
  }

  async beginGcPass(): Promise<GcSession | null> {
    if (this.gcPassRunning) return null;
    this.gcPassRunning = true;
    let releaseFile: (() => Promise<void>) | null;
    try {
      releaseFile = await tryLockFile(this.gcLockFile);
    } catch (err) {
      this.gcPassRunning = false;
      throw err;
    }
    if (!releaseFile) {
      this.gcPassRunning = false;
      return null;
    }
    const release = releaseFile;
    const s = this.stmts;
    const readHeads = (): JournalHeads => new Map((s.allHeads.all() as { id: string; head_sjid: number }[]).map((row) => [row.id, row.head_sjid]));
    return {
      heads: async () => readHeads(),
      retainedBlocks: async (historyMs, onPage) => {
        const cutoff = Date.now() - historyMs;
        let after = { ns: '', sjid: 0 };
        for (;;) {
          const rows = s.retainedPage.all(after.ns, after.sjid, cutoff, GC_SCAN_PAGE) as { ns: string; sjid: number; blocks: Buffer }[];
          if (rows.length === 0) return;
          onPage(Buffer.concat(rows.map((row) => row.blocks)));
          const last = rows[rows.length - 1];
          after = { ns: last.ns, sjid: last.sjid };
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      },
      withCommitsHeld: (heads, work) =>
        this.gate.exclusive(async () => {
          const newer: Buffer[] = [];
          for (const [ns, head] of readHeads()) {
            const known = heads.get(ns) ?? 0;
            if (head <= known) continue;
            for (const blocks of s.blocksAfter.all(ns, known) as Buffer[]) newer.push(blocks);
            heads.set(ns, head);
          }
          this.gcGeneration += 1;
          return work(Buffer.concat(newer));
        }),
      end: async () => {
        await release();
        this.gcPassRunning = false;
      },
    };
  }

  async history(ns: NamespaceId, path: FilePath, before: number | null, limit: number, since: number | null = null): Promise<HistoryResponse> {
    const versions: VersionEntry[] = [];
    let blockCount = 0;
    let more = false;
    for (const row of this.stmts.history.iterate(ns, path, before ?? Number.MAX_SAFE_INTEGER + 1, since ?? 0, limit + 1) as IterableIterator<VersionRow>) {
      const hashes = row.blocks.length / 32;
      if (versions.length === limit || (versions.length > 0 && blockCount + hashes > HISTORY_BLOCK_BUDGET)) {
        more = true;
        break;
      }
      blockCount += hashes;
      versions.push(toVersion(row));
    }
    return { versions, more };
  }

  async deletedFiles(ns: NamespaceId, before: number | null, limit: number, since: number | null = null): Promise<DeletedFilesResponse> {
    const files: DeletedFile[] = [];
    let more = false;
    for (const row of this.stmts.deletions.iterate(ns, before ?? Number.MAX_SAFE_INTEGER + 1, since ?? 0, limit + 1) as IterableIterator<DeletionRow>) {
      if (files.length === limit) {
        more = true;
        break;
      }
      const last = this.stmts.versionBefore.get(ns, row.path, row.sjid) as { sjid: number; size: number; mtime: number } | undefined;
      // A deletion always follows a live version (not_live refuses the rest); none means nothing to restore.
      if (last === undefined) continue;
      files.push({
        path: row.path as FilePath,
        sjid: row.sjid,
        deletedAt: row.committed_at,
        device: row.device,
        lastSjid: last.sjid,
        size: last.size,
        mtime: last.mtime,
      });
    }
    return { files, more };
  }

  async namespaceReferencesBlock(ns: NamespaceId, hash: BlockHash): Promise<boolean> {
    return this.stmts.hasBlockRef.get(ns, Buffer.from(hash, 'hex')) !== undefined;
  }

  async namespaceReferencedBlocks(ns: NamespaceId, hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    if (hashes.length === 0) return new Set();
    const found = this.stmts.blockRefsAmong.all(ns, JSON.stringify(hashes)) as string[];
    return new Set(found as BlockHash[]);
  }

  async lanKey(ns: NamespaceId): Promise<Buffer> {
    let key = this.stmts.lanKey.get(ns) as Buffer | null | undefined;
    if (key === null) {
      // Another process on the same file may set it first: the conditional update keeps theirs.
      this.stmts.setLanKeyIfUnset.run(randomBytes(LAN_KEY_BYTES), ns);
      key = this.stmts.lanKey.get(ns) as Buffer | null | undefined;
    }
    if (!key) throw new Error(`no workspace ${ns}`);
    return key;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private workspaceSync(ns: NamespaceId): Workspace | null {
    const row = this.stmts.workspace.get(ns) as { id: NamespaceId; name: string; head_sjid: number } | undefined;
    return row ? { namespaceId: row.id, name: row.name, head: row.head_sjid } : null;
  }
}

function prepareStatements(db: Database.Database) {
  return {
    insertWorkspace: db.prepare('INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)'),
    insertMember: db.prepare('INSERT INTO members (token_hash, ns, created_at) VALUES (?, ?, ?)'),
    insertInvite: db.prepare('INSERT INTO invites (invite_hash, ns, created_at) VALUES (?, ?, ?)'),
    liveInvite: db.prepare('SELECT ns FROM invites WHERE invite_hash = ? AND revoked_at IS NULL').pluck(),
    revokeInvites: db.prepare('UPDATE invites SET revoked_at = ? WHERE ns = ? AND revoked_at IS NULL'),
    member: db.prepare('SELECT ns FROM members WHERE token_hash = ?').pluck(),
    workspace: db.prepare('SELECT id, name, head_sjid FROM workspaces WHERE id = ?'),
    head: db.prepare('SELECT head_sjid FROM workspaces WHERE id = ?').pluck(),
    setHead: db.prepare('UPDATE workspaces SET head_sjid = ? WHERE id = ?'),
    readJournal: db.prepare(
      'SELECT sjid, path, size, mtime, blocks, deleted FROM journal WHERE ns = ? AND sjid > ? ORDER BY sjid LIMIT ?',
    ),
    insertEntry: db.prepare(
      'INSERT INTO journal (ns, sjid, path, size, mtime, blocks, deleted, committed_at, device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    entryAt: db.prepare('SELECT sjid, path, size, mtime, blocks, deleted, device, committed_at FROM journal WHERE ns = ? AND sjid = ?'),
    // journal_path (ns, path, sjid) walked backwards.
    history: db.prepare(
      'SELECT sjid, path, size, mtime, blocks, deleted, device, committed_at FROM journal WHERE ns = ? AND path = ? AND sjid < ? AND (superseded_at IS NULL OR superseded_at >= ?) ORDER BY sjid DESC LIMIT ?',
    ),
    // journal_deletions (ns, sjid) WHERE deleted = 1 walked backwards; a deletion counts only
    // while it is its path's latest entry (journal_path answers that).
    deletions: db.prepare(
      `SELECT d.sjid, d.path, d.committed_at, d.device FROM journal d
       WHERE d.ns = ? AND d.deleted = 1 AND d.sjid < ? AND d.committed_at >= ?
         AND NOT EXISTS (SELECT 1 FROM journal l WHERE l.ns = d.ns AND l.path = d.path AND l.sjid > d.sjid)
       ORDER BY d.sjid DESC LIMIT ?`,
    ),
    versionBefore: db.prepare('SELECT sjid, size, mtime FROM journal WHERE ns = ? AND path = ? AND sjid < ? ORDER BY sjid DESC LIMIT 1'),
    liveFile: db.prepare('SELECT sjid FROM files_live WHERE ns = ? AND path = ?').pluck(),
    upsertLive: db.prepare(
      'INSERT INTO files_live (ns, path, sjid) VALUES (?, ?, ?) ON CONFLICT (ns, path) DO UPDATE SET sjid = excluded.sjid',
    ),
    deleteLive: db.prepare('DELETE FROM files_live WHERE ns = ? AND path = ?'),
    addBlockRef: db.prepare('INSERT OR IGNORE INTO ns_blocks (ns, hash, first_sjid) VALUES (?, ?, ?)'),
    hasBlockRef: db.prepare('SELECT 1 FROM ns_blocks WHERE ns = ? AND hash = ?').pluck(),
    // The hashes arrive as one JSON array of hex strings: one statement whatever their number.
    blockRefsAmong: db
      .prepare('SELECT lower(hex(hash)) FROM ns_blocks WHERE ns = ? AND hash IN (SELECT unhex(value) FROM json_each(?))')
      .pluck(),
    supersede: db.prepare('UPDATE journal SET superseded_at = ? WHERE ns = ? AND sjid = ?'),
    allHeads: db.prepare('SELECT id, head_sjid FROM workspaces'),
    // Live versions and versions superseded after the cutoff, in primary-key order (keyset pages).
    retainedPage: db.prepare(
      `SELECT ns, sjid, blocks FROM journal
       WHERE (ns, sjid) > (?, ?) AND deleted = 0 AND (superseded_at IS NULL OR superseded_at > ?)
       ORDER BY ns, sjid LIMIT ?`,
    ),
    blocksAfter: db.prepare('SELECT blocks FROM journal WHERE ns = ? AND sjid > ?').pluck(),
    lanKey: db.prepare('SELECT lan_key FROM workspaces WHERE id = ?').pluck(),
    setLanKeyIfUnset: db.prepare('UPDATE workspaces SET lan_key = ? WHERE id = ? AND lan_key IS NULL'),
  };
}

/** Ends the batch transaction (rolling it back) at the element that deletes a path not live. */
class NotLive extends Error {
  constructor(readonly index: number) {
    super(`batch element ${index} deletes a path that is not live`);
  }
}

/** Ends the batch transaction (rolling it back) at the element whose parent is not the live sjid. */
class Conflict extends Error {
  constructor(
    readonly index: number,
    readonly current: VersionEntry | null,
  ) {
    super(`batch element ${index} names a parent that is not the live entry`);
  }
}

function toVersion(row: VersionRow): VersionEntry {
  return { ...toEntry(row), device: row.device, committedAt: row.committed_at };
}

function toEntry(row: JournalRow): JournalEntry {
  const blocks: BlockHash[] = [];
  for (let i = 0; i < row.blocks.length; i += 32) blocks.push(row.blocks.toString('hex', i, i + 32) as BlockHash);
  return {
    sjid: row.sjid,
    path: row.path as FilePath,
    size: row.size,
    mtime: row.mtime,
    blocks,
    deleted: row.deleted === 1,
  };
}
