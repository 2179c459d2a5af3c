import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { LAN_KEY_BYTES, type BlockHash, type CommitRequest, type DeletedFilesResponse, type FilePath, type HistoryResponse, type JournalEntry, type NamespaceId, type VersionEntry } from '../../protocol/index.ts';
import type { Logger } from '../log.ts';
import { journalPayload } from './pg-journal-notifier.ts';
import { asStoreError, errorMessage, isConnectionError } from './pg-errors.ts';
import { migratePostgres } from './pg-migrations.ts';
import type { PostgresTarget } from './pg-target.ts';
import type { BeforeCommitWrite, GcMetadata, GcSession, JournalHeads } from './gc-metadata.ts';
import { HISTORY_BLOCK_BUDGET, PAGE_BLOCK_BUDGET, commitOne, type CommitBatchResult, type CommitResult, type JournalRead, type MetadataStore, type NewWorkspace, type Workspace } from './metadata-store.ts';

/** Opening one connection: a server that does not answer (rather than refusing) costs this much. */
const CONNECT_TIMEOUT_MS = 5_000;

/**
 * pg-pool uses one `connectionTimeoutMillis` both for opening a connection and for waiting
 * for a free one. The two want different bounds: an unreachable server should turn into
 * 503s within seconds, while a burst of requests (200 commits at once) may queue longer.
 */
class PooledClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super({ ...(typeof config === 'string' ? { connectionString: config } : config), connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  }
}

const POOL_SETTINGS: pg.PoolConfig = {
  Client: PooledClient,
  max: 10,
  // Waiting for a free connection when all are busy.
  connectionTimeoutMillis: 30_000,
  idleTimeoutMillis: 30_000,
  // A server that stops answering mid-query must not hold requests forever.
  query_timeout: 30_000,
  keepAlive: true,
  application_name: 'nearsync',
};

/**
 * Advisory lock classes (first key; the second is the schema's hash, so deployments sharing a
 * database never block each other): 'nsgc' orders commits (shared, per transaction) against
 * GC batches (exclusive, per batch); 'nsgp' lets one GC pass run at a time.
 */
const GC_GATE_LOCK = 0x6e736763;
const GC_PASS_LOCK = 0x6e736770;
/** Journal rows read per step of a GC scan. */
const GC_SCAN_PAGE = 2_000;

/** A timestamptz column read as ms since the epoch (a bigint, so a string in node-postgres). */
function committedAtMs(column: string): string {
  return `floor(extract(epoch FROM ${column}) * 1000)::bigint AS committed_at`;
}

interface JournalRow {
  sjid: number;
  path: string;
  size: number;
  mtime: number;
  blocks: Buffer;
  deleted: boolean;
  candidates: number;
}

interface VersionRow extends Omit<JournalRow, 'candidates'> {
  device: string | null;
  /** ms since the epoch, as a string (bigint). */
  committed_at: string;
}

/**
 * Workspace metadata and the journal in PostgreSQL, shared by any number of server
 * instances. Same contract as the SQLite store; what differs is how order is kept across
 * processes: a commit first increments its workspace's head_sjid, and that row lock makes
 * the commits of one namespace take turns (gapless, ordered sjids) while other namespaces
 * commit in parallel. The commit also sends NOTIFY, delivered only if it commits, which
 * wakes long polls on every instance (see PgJournalNotifier).
 *
 * Every failure to reach PostgreSQL surfaces as StoreUnavailableError (HTTP 503); the pool
 * drops broken connections and opens new ones when the server is back.
 */
export class PgMetadataStore implements MetadataStore, GcMetadata {
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly channel: string,
  ) {}

  /** Connects, brings the schema up to date (refusing a newer one) and returns the store. */
  static async open(target: PostgresTarget, logger: Logger): Promise<PgMetadataStore> {
    const pool = new pg.Pool({ ...POOL_SETTINGS, ...target.clientConfig, ...(target.poolSize === null ? {} : { max: target.poolSize }) });
    // Without these, a connection dropped by the server would be an unhandled 'error' event
    // and end the process. The pool discards such clients and opens new ones on demand.
    pool.on('error', (err) => logger.warn('postgres: idle connection lost', { err: err.message }));
    pool.on('connect', (client) => {
      client.on('error', (err) => logger.debug('postgres: connection error', { err: err.message }));
    });
    try {
      const client = await pool.connect();
      try {
        const { from, to } = await migratePostgres(client, target.schema);
        if (from !== to) logger.info('postgres: schema migrated', { from, to, schema: target.schema });
      } finally {
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => {});
      throw new Error(`PostgreSQL at ${target.display}: ${errorMessage(err)}`, { cause: err });
    }
    return new PgMetadataStore(pool, target.channel);
  }

  async createWorkspace(w: NewWorkspace): Promise<void> {
    // One statement is one transaction; the foreign keys are checked at its end.
    await this.query(
      `WITH workspace AS (INSERT INTO workspaces (id, name) VALUES ($1, $2)),
            member AS (INSERT INTO members (token_hash, ns) VALUES ($3, $1))
       INSERT INTO invites (invite_hash, ns) VALUES ($4, $1)`,
      [w.namespaceId, w.name, digest(w.tokenHash), digest(w.inviteHash)],
    );
  }

  async joinByInviteHash(inviteHash: string, tokenHash: string): Promise<Workspace | null> {
    const result = await this.query<{ id: NamespaceId; name: string; head_sjid: number }>(
      `WITH joined AS (
         INSERT INTO members (token_hash, ns)
         SELECT $2, ns FROM invites WHERE invite_hash = $1 AND revoked_at IS NULL
         RETURNING ns
       )
       SELECT w.id, w.name, w.head_sjid FROM workspaces w JOIN joined ON w.id = joined.ns`,
      [digest(inviteHash), digest(tokenHash)],
    );
    const row = result.rows[0];
    return row ? { namespaceId: row.id, name: row.name, head: row.head_sjid } : null;
  }

  async rotateInvite(ns: NamespaceId, inviteHash: string): Promise<void> {
    await this.transaction(async (client) => {
      // Two rotations at once would each miss the other's new invite: take turns on the workspace row.
      await client.query('SELECT 1 FROM workspaces WHERE id = $1 FOR NO KEY UPDATE', [ns]);
      await client.query('UPDATE invites SET revoked_at = now() WHERE ns = $1 AND revoked_at IS NULL', [ns]);
      await client.query('INSERT INTO invites (invite_hash, ns) VALUES ($1, $2)', [digest(inviteHash), ns]);
    });
  }

  async authenticate(tokenHash: string): Promise<{ namespaceId: NamespaceId } | null> {
    const result = await this.query<{ ns: NamespaceId }>('SELECT ns FROM members WHERE token_hash = $1', [digest(tokenHash)]);
    return result.rows[0] ? { namespaceId: result.rows[0].ns } : null;
  }

  async getWorkspace(ns: NamespaceId): Promise<Workspace | null> {
    const result = await this.query<{ id: NamespaceId; name: string; head_sjid: number }>(
      'SELECT id, name, head_sjid FROM workspaces WHERE id = $1',
      [ns],
    );
    const row = result.rows[0];
    return row ? { namespaceId: row.id, name: row.name, head: row.head_sjid } : null;
  }

  async readJournal(ns: NamespaceId, afterSjid: number, limit: number): Promise<JournalRead> {
    // The running count of hashes is taken from the stored lengths, without reading the
    // digests, so a page is cut at the block budget before any large row is fetched. An
    // entry is kept while the page is under `limit` and, after the first, within the budget.
    const result = await this.query<JournalRow>(
      `WITH candidates AS (
         SELECT sjid,
                row_number() OVER running AS n,
                sum(octet_length(blocks) / 32) OVER running AS hashes
         FROM journal
         WHERE ns = $1 AND sjid > $2
         WINDOW running AS (ORDER BY sjid ROWS UNBOUNDED PRECEDING)
         ORDER BY sjid
         LIMIT $3::integer + 1
       )
       SELECT j.sjid, j.path, j.size, j.mtime, j.blocks, j.deleted, (SELECT count(*) FROM candidates) AS candidates
       FROM candidates c JOIN journal j ON j.ns = $1 AND j.sjid = c.sjid
       WHERE c.n <= $3::integer AND (c.n = 1 OR c.hashes <= $4::integer)
       ORDER BY j.sjid`,
      [ns, afterSjid, limit, PAGE_BLOCK_BUDGET],
    );
    const rows = result.rows;
    return { entries: rows.map(toEntry), more: rows.length > 0 && rows[0].candidates > rows.length };
  }

  async headSjid(ns: NamespaceId): Promise<number> {
    const result = await this.query<{ head_sjid: number }>('SELECT head_sjid FROM workspaces WHERE id = $1', [ns]);
    return result.rows[0]?.head_sjid ?? 0;
  }

  async commit(ns: NamespaceId, request: CommitRequest): Promise<CommitResult> {
    return commitOne(this, ns, request);
  }

  /**
   * A fixed number of round trips whatever the batch size: take the sjids (the row lock on
   * the workspace makes this namespace's commits take turns, so files_live cannot change
   * under us, and under READ COMMITTED the next statement sees what the commit before us
   * left), read the live sjids of the paths the batch deletes or conditions on a parent,
   * apply the rules in order here, then write every row and the one notification in a
   * single statement.
   */
  async commitBatch(ns: NamespaceId, requests: readonly CommitRequest[], beforeWrite?: BeforeCommitWrite): Promise<CommitBatchResult> {
    return this.transaction(
      async (client): Promise<CommitBatchResult> => {
        if (beforeWrite) {
          // Two statements, so the generation is read (a fresh snapshot under READ COMMITTED)
          // only once the lock is granted, i.e. after any GC batch before us has finished.
          const [, generation] = (await client.query(
            `SELECT pg_advisory_xact_lock_shared(${GC_GATE_LOCK}, hashtext(current_schema())); SELECT generation FROM gc_state`,
          )) as unknown as [pg.QueryResult, pg.QueryResult<{ generation: number }>];
          await beforeWrite(generation.rows[0].generation);
        }
        const head = await client.query<{ head_sjid: number }>(
          'UPDATE workspaces SET head_sjid = head_sjid + $2 WHERE id = $1 RETURNING head_sjid',
          [ns, requests.length],
        );
        if (head.rowCount === 0) return { ok: false, reason: 'no_namespace' };
        const last = head.rows[0].head_sjid;
        const first = last - requests.length + 1;

        const checkedPaths = [...new Set(requests.filter((r) => r.deleted || r.parent !== undefined).map((r) => r.path))];
        // path → live sjid, as the elements applied so far leave it.
        const live = new Map<string, number>();
        if (checkedPaths.length > 0) {
          const rows = await client.query<{ path: string; sjid: number }>(
            'SELECT path, sjid FROM files_live WHERE ns = $1 AND path = ANY($2::text[])',
            [ns, checkedPaths],
          );
          for (const row of rows.rows) live.set(row.path, row.sjid);
        }
        // The last element touching a path decides its row; earlier ones only count for the rules.
        const finalState = new Map<string, { sjid: number; deleted: boolean }>();
        for (const [index, request] of requests.entries()) {
          const liveSjid = live.get(request.path);
          if (request.parent !== undefined && request.parent !== (liveSjid ?? 0)) {
            const current = liveSjid === undefined ? null : await this.liveVersion(client, ns, liveSjid, requests, first);
            return { ok: false, reason: 'conflict', index, current };
          }
          if (request.deleted) {
            if (liveSjid === undefined) return { ok: false, reason: 'not_live', index };
            live.delete(request.path);
          } else {
            live.set(request.path, first + index);
          }
          finalState.set(request.path, { sjid: first + index, deleted: request.deleted });
        }
        // A version replaced by a later element of this same batch is superseded as it lands.
        const replacedInBatch = requests.map((request, index) => !request.deleted && finalState.get(request.path)!.sjid !== first + index);
        const removed = [...finalState].filter(([, state]) => state.deleted).map(([path]) => path);
        const kept = [...finalState].filter(([, state]) => !state.deleted);

        const digests = requests.map((request) => Buffer.concat(request.blocks.map(digest)));
        const refSjids = requests.flatMap((request, index) => request.blocks.map(() => first + index));
        await client.query(
          `WITH removed AS (
             DELETE FROM files_live WHERE ns = $1 AND path = ANY($2::text[])
           ), kept AS (
             INSERT INTO files_live (ns, path, sjid)
             SELECT $1, path, sjid FROM unnest($3::text[], $4::bigint[]) AS t(path, sjid)
             ON CONFLICT (ns, path) DO UPDATE SET sjid = excluded.sjid
           ), entries AS (
             INSERT INTO journal (ns, sjid, path, size, mtime, blocks, deleted, device, superseded_at)
             SELECT $1, sjid, path, size, mtime, blocks, deleted, device, CASE WHEN replaced THEN now() END
             FROM unnest($5::bigint[], $6::text[], $7::bigint[], $8::bigint[], $9::bytea[], $10::boolean[], $15::text[], $16::boolean[])
               AS t(sjid, path, size, mtime, blocks, deleted, device, replaced)
           ), superseded AS (
             -- The versions live before this batch (files_live as the statement found it) whose
             -- path the batch touches start their retention period (block GC).
             UPDATE journal j SET superseded_at = now()
             FROM files_live f
             WHERE f.ns = $1 AND f.path = ANY($17::text[]) AND j.ns = $1 AND j.sjid = f.sjid
           ), refs AS (
             INSERT INTO ns_blocks (ns, hash, first_sjid)
             SELECT $1, substring($11::bytea FROM (n::integer - 1) * 32 + 1 FOR 32) AS hash, min(sjid)
             FROM unnest($12::bigint[]) WITH ORDINALITY AS t(sjid, n)
             GROUP BY hash
             ON CONFLICT (ns, hash) DO NOTHING
           )
           SELECT pg_notify($13, $14)`,
          [
            ns,
            removed,
            kept.map(([path]) => path),
            kept.map(([, state]) => state.sjid),
            requests.map((_, index) => first + index),
            requests.map((request) => request.path),
            requests.map((request) => request.size),
            requests.map((request) => request.mtime),
            digests,
            requests.map((request) => request.deleted),
            Buffer.concat(digests),
            refSjids,
            this.channel,
            journalPayload(ns, last),
            requests.map((request) => request.device ?? null),
            replacedInBatch,
            [...finalState.keys()],
          ],
        );
        return { ok: true, sjids: requests.map((_, index) => first + index) };
      },
      (result) => result.ok,
    );
  }

  /**
   * The pass holds one pooled connection throughout: the pass lock is a session lock on it,
   * and each batch's exclusive gate lock too (a session lock, so the generation bump commits
   * before any block is deleted while commits stay held off until the unlock). A connection
   * that fails is discarded, which releases its locks.
   */
  async beginGcPass(): Promise<GcSession | null> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw asStoreError(err);
    }
    let broken = false;
    const q = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> => {
      try {
        return (await client.query<R>(text, values)).rows;
      } catch (err) {
        if (isConnectionError(err)) broken = true;
        throw asStoreError(err);
      }
    };
    try {
      const [row] = await q<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext(current_schema())) AS ok', [GC_PASS_LOCK]);
      if (!row.ok) {
        client.release();
        return null;
      }
    } catch (err) {
      client.release(true);
      throw err;
    }
    const readHeads = async (): Promise<JournalHeads> =>
      new Map((await q<{ id: string; head_sjid: number }>('SELECT id, head_sjid FROM workspaces')).map((r) => [r.id, r.head_sjid]));
    let ended = false;
    return {
      heads: readHeads,
      retainedBlocks: async (historyMs, onPage) => {
        let after = { ns: '', sjid: 0 };
        for (;;) {
          const rows = await q<{ ns: string; sjid: number; blocks: Buffer }>(
            `SELECT ns, sjid, blocks FROM journal
             WHERE (ns, sjid) > ($1, $2) AND NOT deleted
               AND (superseded_at IS NULL OR superseded_at > now() - $3::bigint * interval '1 millisecond')
             ORDER BY ns, sjid LIMIT $4`,
            [after.ns, after.sjid, Math.round(historyMs), GC_SCAN_PAGE],
          );
          if (rows.length === 0) return;
          onPage(Buffer.concat(rows.map((r) => r.blocks)));
          const last = rows[rows.length - 1];
          after = { ns: last.ns, sjid: last.sjid };
        }
      },
      withCommitsHeld: async (heads, work) => {
        await q('SELECT pg_advisory_lock($1, hashtext(current_schema()))', [GC_GATE_LOCK]);
        try {
          // Statements after the lock: they see every commit that held the gate before us.
          const now = await readHeads();
          const advanced = [...now].filter(([ns, head]) => head > (heads.get(ns) ?? 0));
          let newer = Buffer.alloc(0);
          if (advanced.length > 0) {
            const rows = await q<{ blocks: Buffer }>(
              `SELECT j.blocks FROM journal j
               JOIN unnest($1::text[], $2::bigint[]) AS k(ns, head) ON j.ns = k.ns AND j.sjid > k.head`,
              [advanced.map(([ns]) => ns), advanced.map(([ns]) => heads.get(ns) ?? 0)],
            );
            newer = Buffer.concat(rows.map((r) => r.blocks));
            for (const [ns, head] of advanced) heads.set(ns, head);
          }
          await q('UPDATE gc_state SET generation = generation + 1');
          return await work(newer);
        } finally {
          await q('SELECT pg_advisory_unlock($1, hashtext(current_schema()))', [GC_GATE_LOCK]).catch(() => {
            broken = true;
          });
        }
      },
      end: async () => {
        if (ended) return;
        ended = true;
        if (!broken) {
          await q('SELECT pg_advisory_unlock($1, hashtext(current_schema()))', [GC_PASS_LOCK]).catch(() => {
            broken = true;
          });
        }
        // A discarded connection takes its session locks with it.
        client.release(broken);
      },
    };
  }

  /** The live entry at `sjid`: an element of this batch (not written yet), or a journal row. */
  private async liveVersion(
    client: pg.PoolClient,
    ns: NamespaceId,
    sjid: number,
    requests: readonly CommitRequest[],
    first: number,
  ): Promise<VersionEntry> {
    if (sjid >= first) {
      const { path, size, mtime, blocks, deleted, device } = requests[sjid - first];
      // Not written yet: the transaction's time is what committed_at will say.
      const now = await client.query<{ at: string }>('SELECT floor(extract(epoch FROM now()) * 1000)::bigint AS at');
      return { sjid, path, size, mtime, blocks, deleted, device: device ?? null, committedAt: Number(now.rows[0].at) };
    }
    const result = await client.query<VersionRow>(
      `SELECT sjid, path, size, mtime, blocks, deleted, device, ${committedAtMs('committed_at')} FROM journal WHERE ns = $1 AND sjid = $2`,
      [ns, sjid],
    );
    return toVersion(result.rows[0]);
  }

  async history(ns: NamespaceId, path: FilePath, before: number | null, limit: number, since: number | null = null): Promise<HistoryResponse> {
    // As readJournal: the running count of hashes comes from the stored lengths, so the page
    // is cut at the block budget before any large row is read; journal_path is walked backwards.
    const result = await this.query<VersionRow & { candidates: number }>(
      `WITH candidates AS (
         SELECT sjid,
                row_number() OVER running AS n,
                sum(octet_length(blocks) / 32) OVER running AS hashes
         FROM journal
         WHERE ns = $1 AND path = $2 AND sjid < $3
           AND (superseded_at IS NULL OR superseded_at >= to_timestamp($6::bigint / 1000.0))
         WINDOW running AS (ORDER BY sjid DESC ROWS UNBOUNDED PRECEDING)
         ORDER BY sjid DESC
         LIMIT $4::integer + 1
       )
       SELECT j.sjid, j.path, j.size, j.mtime, j.blocks, j.deleted, j.device, ${committedAtMs('j.committed_at')}, (SELECT count(*) FROM candidates) AS candidates
       FROM candidates c JOIN journal j ON j.ns = $1 AND j.sjid = c.sjid
       WHERE c.n <= $4::integer AND (c.n = 1 OR c.hashes <= $5::integer)
       ORDER BY j.sjid DESC`,
      [ns, path, before ?? Number.MAX_SAFE_INTEGER + 1, limit, HISTORY_BLOCK_BUDGET, since ?? 0],
    );
    const rows = result.rows;
    return { versions: rows.map(toVersion), more: rows.length > 0 && Number(rows[0].candidates) > rows.length };
  }

  async deletedFiles(ns: NamespaceId, before: number | null, limit: number, since: number | null = null): Promise<DeletedFilesResponse> {
    // journal_deletions walked backwards; a deletion counts only while it is its path's latest
    // entry, and its last live version is the entry before it (both through journal_path).
    const result = await this.query<{
      sjid: number;
      path: string;
      deleted_at: number;
      device: string | null;
      last_sjid: number;
      size: number;
      mtime: number;
    }>(
      `SELECT d.sjid, d.path, floor(extract(epoch FROM d.committed_at) * 1000)::bigint AS deleted_at, d.device,
              v.sjid AS last_sjid, v.size, v.mtime
       FROM journal d
       CROSS JOIN LATERAL (
         SELECT p.sjid, p.size, p.mtime FROM journal p
         WHERE p.ns = d.ns AND p.path = d.path AND p.sjid < d.sjid
         ORDER BY p.sjid DESC LIMIT 1
       ) v
       WHERE d.ns = $1 AND d.deleted AND d.sjid < $2 AND d.committed_at >= to_timestamp($4::bigint / 1000.0)
         AND NOT EXISTS (SELECT 1 FROM journal l WHERE l.ns = d.ns AND l.path = d.path AND l.sjid > d.sjid)
       ORDER BY d.sjid DESC
       LIMIT $3::integer + 1`,
      [ns, before ?? Number.MAX_SAFE_INTEGER + 1, limit, since ?? 0],
    );
    const rows = result.rows.slice(0, limit);
    return {
      files: rows.map((row) => ({
        path: row.path as FilePath,
        sjid: row.sjid,
        deletedAt: row.deleted_at,
        device: row.device,
        lastSjid: row.last_sjid,
        size: row.size,
        mtime: row.mtime,
      })),
      more: result.rows.length > limit,
    };
  }

  async namespaceReferencesBlock(ns: NamespaceId, hash: BlockHash): Promise<boolean> {
    const result = await this.query('SELECT 1 FROM ns_blocks WHERE ns = $1 AND hash = $2', [ns, digest(hash)]);
    return result.rowCount !== 0;
  }

  async namespaceReferencedBlocks(ns: NamespaceId, hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    if (hashes.length === 0) return new Set();
    const result = await this.query<{ hash: Buffer }>('SELECT hash FROM ns_blocks WHERE ns = $1 AND hash = ANY($2::bytea[])', [
      ns,
      hashes.map(digest),
    ]);
    return new Set(result.rows.map((row) => row.hash.toString('hex') as BlockHash));
  }

  async lanKey(ns: NamespaceId): Promise<Buffer> {
    const read = () => this.query<{ lan_key: Buffer | null }>('SELECT lan_key FROM workspaces WHERE id = $1', [ns]);
    let row = (await read()).rows[0];
    if (row === undefined) throw new Error(`no workspace ${ns}`);
    if (row.lan_key !== null) return row.lan_key;
    // Two instances may both find it unset: the row lock makes the second update wait for the
    // first, then find the key set and change nothing. Read again in a new statement (a new
    // snapshot under READ COMMITTED) to see whichever key won.
    await this.query('UPDATE workspaces SET lan_key = $2 WHERE id = $1 AND lan_key IS NULL', [ns, randomBytes(LAN_KEY_BYTES)]);
    row = (await read()).rows[0];
    if (row?.lan_key == null) throw new Error(`no workspace ${ns}`);
    return row.lan_key;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  /** One statement on any pooled connection (pg releases, and on error discards, it). */
  private async query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, values);
    } catch (err) {
      throw asStoreError(err);
    }
  }

  /**
   * Runs `work` in a transaction on one connection; commits when `keep(result)` holds, else
   * rolls back. A connection that failed mid-way is discarded, never returned to the pool.
   */
  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>, keep: (result: T) => boolean = () => true): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw asStoreError(err);
    }
    let discard = false;
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query(keep(result) ? 'COMMIT' : 'ROLLBACK');
      return result;
    } catch (err) {
      discard = true;
      if (!isConnectionError(err)) {
        // A failed statement aborts the transaction; end it so the connection can be reused.
        discard = await client.query('ROLLBACK').then(
          () => false,
          () => true,
        );
      }
      throw asStoreError(err);
    } finally {
      client.release(discard);
    }
  }
}

/** A hex SHA-256 digest (block hash, token or invite hash) as the 32 bytes stored. */
function digest(hex: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new TypeError('expected a lower-case hex SHA-256 digest');
  return Buffer.from(hex, 'hex');
}

function toVersion(row: VersionRow): VersionEntry {
  return { ...toEntry(row), device: row.device, committedAt: Number(row.committed_at) };
}

function toEntry(row: Omit<JournalRow, 'candidates'>): JournalEntry {
  const blocks: BlockHash[] = [];
  for (let i = 0; i < row.blocks.length; i += 32) blocks.push(row.blocks.toString('hex', i, i + 32) as BlockHash);
  return { sjid: row.sjid, path: row.path as FilePath, size: row.size, mtime: row.mtime, blocks, deleted: row.deleted };
}
