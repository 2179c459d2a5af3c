import type Database from 'better-sqlite3';
import type { Migration, MigrationOutcome } from './migration.ts';

/**
 * Ordered schema migrations. Append only: a released version is never edited, so an
 * existing database upgrades in place by running the versions it has not seen.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    sql: `
      CREATE TABLE workspaces (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        head_sjid  INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE members (
        token_hash TEXT PRIMARY KEY,
        ns         TEXT NOT NULL REFERENCES workspaces(id),
        created_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE invites (
        invite_hash TEXT PRIMARY KEY,
        ns          TEXT NOT NULL REFERENCES workspaces(id),
        created_at  INTEGER NOT NULL,
        revoked_at  INTEGER
      ) WITHOUT ROWID;
      CREATE INDEX invites_live ON invites(ns) WHERE revoked_at IS NULL;
      -- blocks: the concatenated 32-byte SHA-256 digests, in file order.
      CREATE TABLE journal (
        ns           TEXT NOT NULL REFERENCES workspaces(id),
        sjid         INTEGER NOT NULL,
        path         TEXT NOT NULL,
        size         INTEGER NOT NULL,
        mtime        INTEGER NOT NULL,
        blocks       BLOB NOT NULL,
        deleted      INTEGER NOT NULL,
        committed_at INTEGER NOT NULL,
        PRIMARY KEY (ns, sjid)
      );
      -- The newest entry of every live path (deletes remove the row).
      CREATE TABLE files_live (
        ns   TEXT NOT NULL,
        path TEXT NOT NULL,
        sjid INTEGER NOT NULL,
        PRIMARY KEY (ns, path)
      ) WITHOUT ROWID;
      -- Blocks a namespace has ever referenced: what its tokens may read.
      CREATE TABLE ns_blocks (
        ns         TEXT NOT NULL,
        hash       BLOB NOT NULL,
        first_sjid INTEGER NOT NULL,
        PRIMARY KEY (ns, hash)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    name: 'lan key',
    // Filled on first request (MetadataStore.lanKey), so existing workspaces get one too.
    sql: `ALTER TABLE workspaces ADD COLUMN lan_key BLOB CHECK (lan_key IS NULL OR length(lan_key) = 32);`,
  },
  {
    version: 3,
    name: 'device labels and version history',
    // device: the committing device's label (NULL for entries from before, or from clients
    // that send none). The index answers a path's history newest first without a scan.
    sql: `
      ALTER TABLE journal ADD COLUMN device TEXT;
      CREATE INDEX journal_path ON journal (ns, path, sjid);
    `,
  },
  {
    version: 4,
    name: 'recently deleted',
    // GET /ns/:ns/deleted walks a namespace's deletions newest first; without this it would
    // read every journal entry of the namespace to find the few that are deletions.
    sql: `CREATE INDEX journal_deletions ON journal (ns, sjid) WHERE deleted = 1;`,
  },
  {
    version: 5,
    name: 'retention',
    // superseded_at (ms): when a version stopped being its path's live version (a later
    // version or a deletion was committed); NULL while live, and for deletion entries. Block
    // GC keeps the blocks of versions superseded less than HISTORY_DAYS ago. Existing
    // versions take the commit time of the next entry of their path.
    sql: `
      ALTER TABLE journal ADD COLUMN superseded_at INTEGER;
      UPDATE journal AS j SET superseded_at = n.next_at
      FROM (
        SELECT ns, sjid, lead(committed_at) OVER (PARTITION BY ns, path ORDER BY sjid) AS next_at FROM journal
      ) AS n
      WHERE j.ns = n.ns AND j.sjid = n.sjid AND j.deleted = 0 AND n.next_at IS NOT NULL;
    `,
  },
];

/** The highest version recorded in the database, 0 for a database never migrated. */
export function sqliteSchemaVersion(db: Database.Database): number {
  const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").pluck().get();
  if (table === undefined) return 0;
  return (db.prepare('SELECT MAX(version) FROM schema_migrations').pluck().get() as number | null) ?? 0;
}

/**
 * Brings the schema up to date, one transaction per version; refuses a database whose
 * version is newer than this code knows. The store runs it at open and `npm run migrate` on demand.
 */
export function migrateSqlite(db: Database.Database): MigrationOutcome {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL
  )`);
  const current = sqliteSchemaVersion(db);
  const latest = MIGRATIONS[MIGRATIONS.length - 1].version;
  if (current > latest) {
    throw new Error(`database schema version ${current} is newer than this server knows (${latest}); refusing to start`);
  }
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const migration of MIGRATIONS) {
    if (migration.version <= current) continue;
    db.transaction(() => {
      db.exec(migration.sql);
      record.run(migration.version, migration.name, Date.now());
    }).immediate();
  }
  return { from: current, to: Math.max(current, latest) };
}
