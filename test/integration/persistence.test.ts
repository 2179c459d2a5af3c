import Database from 'better-sqlite3';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PG_MIGRATIONS } from '../../src/server/storage/pg-migrations.ts';
import { MIGRATIONS } from '../../src/server/storage/sqlite-metadata-store.ts';
import { api, commitFile, createWorkspace, head, makeBlock, startHarness, tempFiles, type Harness } from './helpers.ts';
import { BACKEND_CASES } from '../support/backend-cases.ts';
import { runStatement } from '../support/pg-test-db.ts';

/** The metadata engine's migration ledger, read and edited beside the server. */
interface Ledger {
  /** The versions this code knows. */
  known: number[];
  recorded(): Promise<number[]>;
  record(version: number): Promise<void>;
  forget(version: number): Promise<void>;
}

function ledgerOf(h: Harness): Ledger {
  const databaseUrl = h.backends.databaseUrl;
  if (databaseUrl) {
    return {
      known: PG_MIGRATIONS.map((m) => m.version),
      recorded: async () =>
        (await runStatement<{ version: number }>(databaseUrl, 'SELECT version FROM schema_migrations ORDER BY version')).map((r) => r.version),
      record: async (version) => void (await runStatement(databaseUrl, "INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')", [version])),
      forget: async (version) => void (await runStatement(databaseUrl, 'DELETE FROM schema_migrations WHERE version = $1', [version])),
    };
  }
  const withDb = <T>(readonly: boolean, work: (db: Database.Database) => T): T => {
    const db = new Database(join(h.dataDir, 'nearsync.db'), { readonly });
    try {
      return work(db);
    } finally {
      db.close();
    }
  };
  return {
    known: MIGRATIONS.map((m) => m.version),
    recorded: async () => withDb(true, (db) => db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all() as number[]),
    record: async (version) =>
      void withDb(false, (db) => db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(version, 'future', Date.now())),
    forget: async (version) => void withDb(false, (db) => db.prepare('DELETE FROM schema_migrations WHERE version = ?').run(version)),
  };
}

describe.each(BACKEND_CASES)('persistence on $name', (backendCase) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
  });
  afterAll(async () => {
    await h.stop();
  });

  describe('restart on the same data dir and engines', () => {
    it('keeps workspaces, tokens, invites, the journal and the blocks', async () => {
      const m = await createWorkspace(h.url, 'Durable');
      const blocks = [makeBlock(70_000), makeBlock(80_000)];
      await commitFile(h.url, m, 'a.bin', blocks);
      await commitFile(h.url, m, 'b.bin', [blocks[1]]);
      const pageBefore = (await api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal`, { token: m.token })).body;
      const oldUrl = h.url;

      // A crash could leave a half-written upload behind: the next start removes it.
      if (backendCase.blocks === 'files') await writeFile(join(h.dataDir, 'blocks', 'tmp', 'stale-upload'), 'partial');
      await h.restart();
      expect(h.url).not.toBe(oldUrl);
      if (backendCase.blocks === 'files') expect(await tempFiles(h.dataDir)).toEqual([]);

      expect(await head(h.url, m)).toBe(2);
      const pageAfter = (await api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal`, { token: m.token })).body;
      expect(pageAfter).toEqual(pageBefore);
      const block = await api(h.url, 'GET', `/api/v1/blocks/${blocks[0].hash}?ns=${m.ns}`, { token: m.token });
      expect(block.status).toBe(200);
      expect(Buffer.compare(block.body, blocks[0].bytes)).toBe(0);
      const missing = await api(h.url, 'POST', '/api/v1/blocks/missing', { token: m.token, json: { hashes: blocks.map((b) => b.hash) } });
      expect(missing.body.missing).toEqual([]);

      // The journal continues where it was, and the share link still works.
      expect(await commitFile(h.url, m, 'c.bin', [makeBlock(10)])).toBe(3);
      const joined = await api(h.url, 'POST', '/api/v1/join', { json: { invite: m.invite } });
      expect(joined.status).toBe(200);
      expect(joined.body.namespaceId).toBe(m.ns);
      const del = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, {
        token: joined.body.token,
        json: { path: 'a.bin', size: 0, mtime: 0, blocks: [], deleted: true },
      });
      expect(del.body).toEqual({ sjid: 4 });
    });

    it('records the schema version and does not re-run migrations', async () => {
      await h.restart();
      const ledger = ledgerOf(h);
      expect(await ledger.recorded()).toEqual(ledger.known);
      if (backendCase.metadata === 'sqlite') {
        const db = new Database(join(h.dataDir, 'nearsync.db'), { readonly: true });
        try {
          expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
        } finally {
          db.close();
        }
      }
    });

    it('refuses to open a database from a newer server', async () => {
      await h.server.close();
      const ledger = ledgerOf(h);
      await ledger.record(999);
      await expect(h.restart()).rejects.toThrow(/newer/);
      await ledger.forget(999);
      await h.restart();
      expect((await api(h.url, 'GET', '/api/v1/health')).status).toBe(200);
      expect(await ledger.recorded()).toEqual(ledger.known);
    });
  });
});
