import type pg from 'pg';
import type { Migration, MigrationOutcome } from './migration.ts';

/**
 * The PostgreSQL schema, step by step. Append only, like the SQLite list; versions need not
 * match it. Hashes (block, token, invite) are bytea; times are timestamptz.
 */
export const PG_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    sql: `
      CREATE TABLE workspaces (
        id         text PRIMARY KEY,
        name       text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        -- The latest sjid. A commit increments it first, so its row lock orders the commits of
        -- one namespace across every instance while other namespaces go on in parallel.
        head_sjid  bigint NOT NULL DEFAULT 0
      );
      CREATE TABLE members (
        token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
        ns         text NOT NULL REFERENCES workspaces (id),
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE invites (
        invite_hash bytea PRIMARY KEY CHECK (octet_length(invite_hash) = 32),
        ns          text NOT NULL REFERENCES workspaces (id),
        created_at  timestamptz NOT NULL DEFAULT now(),
        revoked_at  timestamptz
      );
      CREATE INDEX invites_live ON invites (ns) WHERE revoked_at IS NULL;
      -- blocks: the concatenated 32-byte SHA-256 digests, in file order.
      CREATE TABLE journal (
        ns           text NOT NULL REFERENCES workspaces (id),
        sjid         bigint NOT NULL,
        path         text NOT NULL,
        size         bigint NOT NULL,
        mtime        bigint NOT NULL,
        blocks       bytea NOT NULL CHECK (octet_length(blocks) % 32 = 0),
        deleted      boolean NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (ns, sjid)
      );
      -- Digests do not compress; stored uncompressed, their length is known without reading them.
      ALTER TABLE journal ALTER COLUMN blocks SET STORAGE EXTERNAL;
      -- The newest entry of every live path (deletes remove the row).
      CREATE TABLE files_live (
        ns   text NOT NULL,
        path text NOT NULL,
        sjid bigint NOT NULL,
        PRIMARY KEY (ns, path)
      );
      -- Blocks a namespace has ever referenced: what its tokens may read.
      CREATE TABLE ns_blocks (
        ns         text NOT NULL,
        hash       bytea NOT NULL,
        first_sjid bigint NOT NULL,
        PRIMARY KEY (ns, hash)
      );
    `,
  },
  {
    version: 2,
    name: 'lan key',
    // Filled on first request (MetadataStore.lanKey), so existing workspaces get one too.
    sql: `ALTER TABLE workspaces ADD COLUMN lan_key bytea CHECK (octet_length(lan_key) = 32);`,
  },
  {
    version: 3,
    name: 'device labels and version history',
    // device: the committing device's label (NULL for entries from before, or from clients
    // that send none; 40 characters at most, as the protocol allows). The index answers a
    // path's history newest first without a scan. Building it holds writes to the journal
    // for as long as it takes (once, at upgrade).
    sql: `
      ALTER TABLE journal ADD COLUMN device text CHECK (char_length(device) <= 40);
      CREATE INDEX journal_path ON journal (ns, path, sjid DESC);
    `,
  },
  {
    version: 4,
    name: 'recently deleted',
    // GET /ns/:ns/deleted walks a namespace's deletions newest first; without this it would
    // read every journal entry of the namespace to find the few that are deletions.
    sql: `CREATE INDEX journal_deletions ON journal (ns, sjid DESC) WHERE deleted;`,
  },
  {
    version: 5,
    name: 'retention',
    // superseded_at: when a version stopped being its path's live version (a later version or
    // a deletion was committed); NULL while live, and for deletion entries. Block GC keeps the
    // blocks of versions superseded less than HISTORY_DAYS ago. Existing versions take the
    // commit time of the next entry of their path. gc_state.generation grows before every
    // batch of block deletions, so instances know when their cached block sizes may be stale.
    sql: `
      ALTER TABLE journal ADD COLUMN superseded_at timestamptz;
      UPDATE journal AS j SET superseded_at = n.next_at
      FROM (
        SELECT ns, sjid, lead(committed_at) OVER (PARTITION BY ns, path ORDER BY sjid) AS next_at FROM journal
      ) AS n
      WHERE j.ns = n.ns AND j.sjid = n.sjid AND NOT j.deleted AND n.next_at IS NOT NULL;
      CREATE TABLE gc_state (
        id         integer PRIMARY KEY CHECK (id = 1),
        generation bigint NOT NULL
      );
      INSERT INTO gc_state (id, generation) VALUES (1, 0);
    `,
  },
];

/** First key of nearsync's advisory locks ('nsyn'); the second is the schema's hash. */
const LOCK_CLASS = 0x6e73796e;

/**
 * Brings the schema up to date in one transaction. Several instances may start at once: each
 * takes a transaction-scoped advisory lock for the schema first, so one migrates and the
 * others then find nothing left to do. A database newer than this code is refused.
 *
 * `schema` is the validated name from `?schema=` (created when missing), or null for the
 * connection's default schema. The client's search_path must already select it.
 */
export async function migratePostgres(client: pg.ClientBase, schema: string | null): Promise<MigrationOutcome> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext(coalesce($2, current_schema(), \'\')))', [LOCK_CLASS, schema]);
    if (schema !== null) {
      // Checked first: CREATE SCHEMA IF NOT EXISTS would still demand CREATE on the database.
      const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      if (exists.rowCount === 0) await client.query(`CREATE SCHEMA "${schema}"`);
    }
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const current: number = (await client.query('SELECT coalesce(max(version), 0) AS v FROM schema_migrations')).rows[0].v;
    const latest = PG_MIGRATIONS[PG_MIGRATIONS.length - 1].version;
    if (current > latest) {
      throw new Error(`database schema version ${current} is newer than this server knows (${latest}); refusing to start`);
    }
    for (const migration of PG_MIGRATIONS) {
      if (migration.version <= current) continue;
      await client.query(migration.sql);
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
    }
    await client.query('COMMIT');
    return { from: current, to: Math.max(current, latest) };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
