import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { postgresFiles, sqliteFiles } from '../support/backend-cases.ts';
import { runStatement } from '../support/pg-test-db.ts';
import { api, commitFile, createWorkspace, makeBlock, putBlock, startHarness, type Harness } from './helpers.ts';

/**
 * Migration 5 on a journal written before it: the server is taken back to schema 4 (column
 * and ledger row removed), restarted, and must fill `superseded_at` from each version's next
 * entry, so block GC judges old data by the same rule as new.
 */

interface Row {
  sjid: number;
  committed: number;
  superseded: number | null;
}

/** Reads and rewinds the journal beside the server, per metadata engine. */
function journalOf(h: Harness) {
  const url = h.backends.databaseUrl;
  if (url) {
    return {
      rows: async (): Promise<Row[]> =>
        (
          await runStatement<{ sjid: number; committed: string; superseded: string | null }>(
            url,
            `SELECT sjid, (extract(epoch FROM committed_at) * 1000)::bigint::text AS committed,
                    (extract(epoch FROM superseded_at) * 1000)::bigint::text AS superseded
             FROM journal ORDER BY sjid`,
          )
        ).map((r) => ({ sjid: r.sjid, committed: Number(r.committed), superseded: r.superseded === null ? null : Number(r.superseded) })),
      rewind: async () => {
        await runStatement(url, 'ALTER TABLE journal DROP COLUMN superseded_at');
        await runStatement(url, 'DROP TABLE gc_state');
        await runStatement(url, 'DELETE FROM schema_migrations WHERE version >= 5');
      },
    };
  }
  const withDb = <T>(work: (db: Database.Database) => T): T => {
    const db = new Database(join(h.dataDir, 'nearsync.db'));
    try {
      return work(db);
    } finally {
      db.close();
    }
  };
  return {
    rows: async (): Promise<Row[]> =>
      withDb((db) => db.prepare('SELECT sjid, committed_at AS committed, superseded_at AS superseded FROM journal ORDER BY sjid').all() as Row[]),
    rewind: async () =>
      withDb((db) => {
        db.exec('ALTER TABLE journal DROP COLUMN superseded_at');
        db.exec('DELETE FROM schema_migrations WHERE version >= 5');
      }),
  };
}

let h: Harness | null = null;
afterEach(async () => {
  await h?.stop();
  h = null;
});

describe.each([sqliteFiles, postgresFiles])('retention migration on $name', (backendCase) => {
  it('fills superseded_at of existing versions from the next entry of their path', async () => {
    h = await startHarness({ backends: backendCase, blockGc: { historyMs: 0, graceMs: 0, intervalMs: 0 } });
    const m = await createWorkspace(h.url);
    const [v1, v2, other, gone] = [100, 200, 300, 400].map(makeBlock);
    await commitFile(h.url, m, 'a', [v1]); // 1: superseded by 2
    await commitFile(h.url, m, 'b', [other]); // 2: live
    await commitFile(h.url, m, 'a', [v2]); // 3: live
    await commitFile(h.url, m, 'c', [gone]); // 4: superseded by the deletion 5
    const del = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: { path: 'c', size: 0, mtime: 0, blocks: [], deleted: true } });
    expect(del.status).toBe(200);

    const journal = journalOf(h);
    const written = await journal.rows();
    const committed = new Map(written.map((r) => [r.sjid, r.committed]));
    // As the commits set it.
    expect(written.map((r) => r.superseded)).toEqual([committed.get(3), null, null, committed.get(5), null]);

    await h.server.close();
    await journal.rewind();
    await h.restart();
    const migrated = await journal.rows();
    expect(migrated.map((r) => r.superseded)).toEqual([committed.get(3), null, null, committed.get(5), null]);

    // And block GC reads it: with HISTORY_DAYS 0 the two superseded versions' blocks go.
    const pass = await h.server.collectBlocks();
    expect(pass.status === 'done' && pass.blocksCollected).toBe(2);
    expect(new Set((await h.storedState()).blocks)).toEqual(new Set([v2.hash, other.hash]));
  });

  it('supersedes, inside one batch commit, what a later element of the batch replaces', async () => {
    h = await startHarness({ backends: backendCase, blockGc: { historyMs: 0, graceMs: 0, intervalMs: 0 } });
    const m = await createWorkspace(h.url);
    const [x, y, z] = [10, 20, 30].map(makeBlock);
    await commitFile(h.url, m, 'kept-before', [z]); // 1
    for (const block of [x, y]) await putBlock(h.url, m.token, block);
    const write = (path: string, block: { hash: string; bytes: Buffer }) => ({ path, size: block.bytes.length, mtime: 1, blocks: [block.hash] });
    const commits = [write('a', x), write('a', y), write('b', x), { path: 'b', size: 0, mtime: 1, blocks: [], deleted: true }, write('kept-before', y)];
    const res = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commits`, { token: m.token, json: { commits } });
    expect(res.body).toEqual({ sjids: [2, 3, 4, 5, 6] });
    const rows = await journalOf(h).rows();
    const batchTime = rows[1].committed;
    expect(rows.map((r) => r.superseded)).toEqual([batchTime, batchTime, null, batchTime, null, null]);
  });
});
