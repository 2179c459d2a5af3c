import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BlockHash, CommitRequest, FilePath, NamespaceId } from '../../src/protocol/index.ts';
import { silentLogger } from '../../src/server/log.ts';
import type { MetadataStore } from '../../src/server/storage/metadata-store.ts';
import { PgMetadataStore } from '../../src/server/storage/pg-metadata-store.ts';
import { parsePostgresUrl } from '../../src/server/storage/pg-target.ts';
import { SqliteMetadataStore } from '../../src/server/storage/sqlite-metadata-store.ts';
import { createTestSchema, type TestSchema } from '../support/pg-test-db.ts';

/**
 * MetadataStore.deletedFiles on each engine directly: the retention cut (`since`) that the
 * HTTP route does not reach yet, and, on SQLite, that the query walks the deletions index
 * instead of the whole journal.
 */

const teardowns: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const teardown of teardowns.reverse()) await teardown();
});

const STORES: Array<{ name: string; open(): Promise<{ store: MetadataStore; dir?: string; schema?: TestSchema }> }> = [
  {
    name: 'sqlite',
    async open() {
      const dir = await mkdtemp(join(tmpdir(), 'nearsync-deleted-'));
      const store = SqliteMetadataStore.open(dir);
      teardowns.push(async () => (await store.close(), await rm(dir, { recursive: true, force: true })));
      return { store, dir };
    },
  },
  {
    name: 'postgres',
    async open() {
      const schema = await createTestSchema('deleted');
      const store = await PgMetadataStore.open(parsePostgresUrl(schema.databaseUrl), silentLogger);
      teardowns.push(async () => (await store.close(), await schema.drop()));
      return { store, schema };
    },
  },
];

const ns = randomBytes(16).toString('base64url') as NamespaceId;
const hash = randomBytes(32).toString('hex') as BlockHash;
const write = (path: string): CommitRequest => ({ path: path as FilePath, size: 1, mtime: 1, blocks: [hash], deleted: false });
const remove = (path: string): CommitRequest => ({ path: path as FilePath, size: 0, mtime: 2, blocks: [], deleted: true });

describe.each(STORES)('$name deletedFiles', ({ name, open }) => {
  it('lists only deletions committed since the cut, and walks the deletions index', async () => {
    const { store, dir, schema } = await open();
    await store.createWorkspace({ namespaceId: ns, name: 'deleted', tokenHash: randomBytes(32).toString('hex'), inviteHash: randomBytes(32).toString('hex') });
    expect((await store.commitBatch(ns, [write('a'), write('b'), remove('a'), remove('b')])).ok).toBe(true);

    const all = await store.deletedFiles(ns, null, 10, null);
    expect(all.files.map((file) => [file.path, file.sjid, file.lastSjid])).toEqual([
      ['b', 4, 2],
      ['a', 3, 1],
    ]);
    expect((await store.deletedFiles(ns, null, 10, all.files[0].deletedAt)).files).toHaveLength(2);
    expect(await store.deletedFiles(ns, null, 10, Date.now() + 60_000)).toEqual({ files: [], more: false });

    if (name === 'postgres') {
      // A table this small is read whole whatever the indexes; forbid that to see which index
      // the query can walk (the planner picks it on its own once the journal is large).
      const plan = await schema!.withClient(async (client) => {
        await client.query('SET enable_seqscan = off');
        const rows = await client.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN SELECT d.sjid FROM journal d WHERE d.ns = $1 AND d.deleted AND d.sjid < $2
           AND NOT EXISTS (SELECT 1 FROM journal l WHERE l.ns = d.ns AND l.path = d.path AND l.sjid > d.sjid)
           ORDER BY d.sjid DESC LIMIT 11`,
          [ns, 10],
        );
        return rows.rows.map((row) => row['QUERY PLAN']).join('\n');
      });
      expect(plan).toMatch(/journal_deletions/);
    }
    if (name === 'sqlite') {
      const db = new Database(join(dir!, 'nearsync.db'), { readonly: true });
      try {
        const plan = db
          .prepare(
            `EXPLAIN QUERY PLAN SELECT d.sjid FROM journal d WHERE d.ns = ? AND d.deleted = 1 AND d.sjid < ? AND d.committed_at >= ?
             AND NOT EXISTS (SELECT 1 FROM journal l WHERE l.ns = d.ns AND l.path = d.path AND l.sjid > d.sjid) ORDER BY d.sjid DESC LIMIT ?`,
          )
          .all(ns, 10, 0, 10) as Array<{ detail: string }>;
        const details = plan.map((step) => step.detail).join('\n');
        expect(details).toMatch(/USING INDEX journal_deletions/);
        expect(details).toMatch(/journal_path/);
      } finally {
        db.close();
      }
    }
  });
});
