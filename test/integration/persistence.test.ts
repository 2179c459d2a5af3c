import Database from 'better-sqlite3';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/server/storage/sqlite-metadata-store.ts';
import { api, commitFile, createWorkspace, head, makeBlock, startHarness, tempFiles, type Harness } from './helpers.ts';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.stop();
});

describe('restart on the same data dir', () => {
  it('keeps workspaces, tokens, invites, the journal and the blocks', async () => {
    const m = await createWorkspace(h.url, 'Durable');
    const blocks = [makeBlock(70_000), makeBlock(80_000)];
    await commitFile(h.url, m, 'a.bin', blocks);
    await commitFile(h.url, m, 'b.bin', [blocks[1]]);
    const pageBefore = (await api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal`, { token: m.token })).body;
    const oldUrl = h.url;

    // A crash could leave a half-written upload behind: the next start removes it.
    await writeFile(join(h.dataDir, 'blocks', 'tmp', 'stale-upload'), 'partial');
    await h.restart();
    expect(h.url).not.toBe(oldUrl);
    expect(await tempFiles(h.dataDir)).toEqual([]);

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
    const db = new Database(join(h.dataDir, 'nearsync.db'), { readonly: true });
    try {
      const versions = db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all();
      expect(versions).toEqual(MIGRATIONS.map((m) => m.version));
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      db.close();
    }
  });

  it('refuses to open a database from a newer server', async () => {
    await h.server.close();
    const db = new Database(join(h.dataDir, 'nearsync.db'));
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(999, 'future', Date.now());
    db.close();
    await expect(h.restart()).rejects.toThrow(/newer/);
    const fix = new Database(join(h.dataDir, 'nearsync.db'));
    fix.prepare('DELETE FROM schema_migrations WHERE version = 999').run();
    fix.close();
    await h.restart();
    expect((await api(h.url, 'GET', '/api/v1/health')).status).toBe(200);
  });
});
