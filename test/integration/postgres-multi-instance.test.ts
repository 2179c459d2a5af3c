import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJournalPage, type JournalPage, type NamespaceId } from '../../src/protocol/index.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import { PG_MIGRATIONS } from '../../src/server/storage/pg-migrations.ts';
import { PgJournalNotifier } from '../../src/server/storage/pg-journal-notifier.ts';
import { parsePostgresUrl } from '../../src/server/storage/pg-target.ts';
import { createTestSchema, type TestSchema } from '../support/pg-test-db.ts';
import { api, createWorkspace, makeBlock, putBlock, until, type Member } from './helpers.ts';

/**
 * Several server instances on one PostgreSQL schema, as behind a load balancer: each has
 * its own port and data dir (block files are per instance here, so blocks are uploaded to
 * both), and they share workspaces, the journal and long-poll wake-ups.
 */

const tempDirs: string[] = [];
const schemas: TestSchema[] = [];
const servers: RunningServer[] = [];

async function instance(schema: TestSchema): Promise<RunningServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'nearsync-pg-multi-'));
  tempDirs.push(dataDir);
  const server = await startServer({ dataDir, logger: silentLogger, backends: { databaseUrl: schema.databaseUrl } });
  servers.push(server);
  return server;
}

async function schemaFor(label: string, options?: { create?: boolean }): Promise<TestSchema> {
  const schema = await createTestSchema(label, options);
  schemas.push(schema);
  return schema;
}

afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
  for (const schema of schemas) await schema.drop();
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
});

describe('two instances on one schema', () => {
  let a: RunningServer;
  let b: RunningServer;
  let schema: TestSchema;
  beforeAll(async () => {
    schema = await schemaFor('multi');
    [a, b] = await Promise.all([instance(schema), instance(schema)]);
  });

  const journal = async (server: RunningServer, m: Member, cursor: number, query = ''): Promise<JournalPage> => {
    const res = await api(server.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=${cursor}${query}`, { token: m.token });
    expect(res.status).toBe(200);
    return parseJournalPage(res.body, cursor);
  };

  it('share workspaces and tokens: created on A, joined and read on B', async () => {
    const m = await createWorkspace(a.url, 'Shared');
    const joined = await api(b.url, 'POST', '/api/v1/join', { json: { invite: m.invite } });
    expect(joined.status).toBe(200);
    expect(joined.body.namespaceId).toBe(m.ns);
    const info = await api(a.url, 'GET', `/api/v1/ns/${m.ns}`, { token: joined.body.token });
    expect(info.body).toEqual({ namespaceId: m.ns, name: 'Shared', cursor: 0 });
  });

  it('keep sjids 1..200 exactly once under 200 concurrent commits to one namespace split across both', async () => {
    const m = await createWorkspace(a.url, 'Busy');
    const block = makeBlock(64);
    for (const server of [a, b]) await putBlock(server.url, m.token, block);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        api(i % 2 === 0 ? a.url : b.url, 'POST', `/api/v1/ns/${m.ns}/commit`, {
          token: m.token,
          json: { path: `c/${i}`, size: 64, mtime: i, blocks: [block.hash] },
        }),
      ),
    );
    for (const res of results) expect(res.status).toBe(200);
    const sjids = results.map((res) => res.body.sjid as number).sort((x, y) => x - y);
    expect(sjids).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));

    const onA = await journal(a, m, 0, '&limit=1000');
    const onB = await journal(b, m, 0, '&limit=1000');
    expect(onA.entries.map((e) => e.sjid)).toEqual(sjids);
    expect(onB).toEqual(onA);
    const byPath = new Map(onA.entries.map((e) => [e.path as string, e.sjid]));
    results.forEach((res, i) => expect(byPath.get(`c/${i}`)).toBe(res.body.sjid));
    // The block is readable through either instance: both see the namespace's reference.
    for (const server of [a, b]) {
      expect((await api(server.url, 'GET', `/api/v1/blocks/${block.hash}?ns=${m.ns}`, { token: m.token })).status).toBe(200);
    }
  });

  it('wake a long poll on B within a second of a commit on A', async () => {
    const m = await createWorkspace(a.url, 'Wake');
    const poll = api(b.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=0&wait=30`, { token: m.token });
    await until(() => b.metrics().journalLongPollsOpen === 1, 5000, 'the poll on B to wait');
    const commit = await api(a.url, 'POST', `/api/v1/ns/${m.ns}/commit`, {
      token: m.token,
      json: { path: 'from-a.txt', size: 0, mtime: 1, blocks: [] },
    });
    expect(commit.body).toEqual({ sjid: 1 });
    const committed = Date.now();
    const res = await poll;
    expect(Date.now() - committed).toBeLessThan(1000);
    expect(res.body.entries.map((e: { path: string }) => e.path)).toEqual(['from-a.txt']);
  });

  it('refuse on both a deletion of a path that is not live, leaving the head where it was', async () => {
    const m = await createWorkspace(a.url, 'Deletes');
    const del = { path: 'gone', size: 0, mtime: 0, blocks: [], deleted: true };
    await api(a.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: { path: 'gone', size: 0, mtime: 0, blocks: [] } });
    const results = await Promise.all(
      [a, b, a, b].map((server) => api(server.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: del })),
    );
    // Exactly one deletion wins; the others find the path no longer live and roll back.
    expect(results.map((r) => r.status).sort()).toEqual([200, 409, 409, 409]);
    expect(results.find((r) => r.status === 200)!.body).toEqual({ sjid: 2 });
    const next = await api(b.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: { path: 'x', size: 0, mtime: 0, blocks: [] } });
    expect(next.body).toEqual({ sjid: 3 });
  });

  it('give exactly one success to twenty conditional commits naming one parent, split across both', async () => {
    const m = await createWorkspace(a.url, 'Conditional');
    const base = await api(a.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: { path: 'doc', size: 0, mtime: 0, blocks: [], parent: 0 } });
    expect(base.body).toEqual({ sjid: 1 });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        api(i % 2 === 0 ? a.url : b.url, 'POST', `/api/v1/ns/${m.ns}/commit`, {
          token: m.token,
          json: { path: 'doc', size: 0, mtime: i + 1, blocks: [], parent: 1, device: `device ${i}` },
        }),
      ),
    );
    expect(results.filter((r) => r.status === 200).map((r) => r.body)).toEqual([{ sjid: 2 }]);
    expect(results.filter((r) => r.status === 409 && r.body.error === 'conflict')).toHaveLength(19);
    const history = await api(b.url, 'GET', `/api/v1/ns/${m.ns}/history?path=doc`, { token: m.token });
    const winner = results.findIndex((r) => r.status === 200);
    expect(history.body.versions.map((v: { sjid: number; device: string | null }) => [v.sjid, v.device])).toEqual([
      [2, `device ${winner}`],
      [1, null],
    ]);
  });

  it('do not wake listeners of another schema', async () => {
    const m = await createWorkspace(a.url, 'Isolated');
    const other = await schemaFor('other');
    const target = parsePostgresUrl(other.databaseUrl);
    expect(target.channel).not.toBe(parsePostgresUrl(schema.databaseUrl).channel);
    const notifier = await PgJournalNotifier.open(target, silentLogger);
    try {
      // Same namespace id: only the channel keeps the schemas apart.
      const waiting = notifier.wait(m.ns as NamespaceId, 0, 1_500);
      await api(a.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: { path: 'x', size: 0, mtime: 0, blocks: [] } });
      expect(await waiting).toBe(false);
    } finally {
      await notifier.close();
    }
  });
});

describe('migrations', () => {
  it('run by several instances starting at once on a new schema, exactly once', async () => {
    const schema = await schemaFor('migrate', { create: false });
    const started = await Promise.all([0, 1, 2].map(() => instance(schema)));
    const versions = await schema.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
    expect(versions.map((row) => row.version)).toEqual(PG_MIGRATIONS.map((m) => m.version));
    const m = await createWorkspace(started[2].url);
    expect((await api(started[0].url, 'GET', `/api/v1/ns/${m.ns}`, { token: m.token })).status).toBe(200);
  });

  it('refuse to start on a schema newer than the code', async () => {
    const schema = await schemaFor('newer');
    const first = await instance(schema);
    await first.close();
    await schema.query("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')");
    const dataDir = await mkdtemp(join(tmpdir(), 'nearsync-pg-multi-'));
    tempDirs.push(dataDir);
    await expect(startServer({ dataDir, logger: silentLogger, backends: { databaseUrl: schema.databaseUrl } })).rejects.toThrow(
      /schema version 999 is newer than this server knows/,
    );
  });

  it('open no more connections than ?pool= allows, however many requests wait', async () => {
    const schema = await schemaFor('pool');
    const app = `nstest_pool_${process.pid}`;
    const dataDir = await mkdtemp(join(tmpdir(), 'nearsync-pg-multi-'));
    tempDirs.push(dataDir);
    const server = await startServer({ dataDir, logger: silentLogger, backends: { databaseUrl: `${schema.databaseUrl}&pool=2&application_name=${app}` } });
    servers.push(server);
    const m = await createWorkspace(server.url);
    let most = 0;
    const requests = Promise.all(
      Array.from({ length: 40 }, () => api(server.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=0`, { token: m.token })),
    );
    const watching = (async () => {
      for (let i = 0; i < 20; i++) {
        const [{ count }] = await schema.query<{ count: string }>('SELECT count(*) FROM pg_stat_activity WHERE application_name = $1', [app]);
        most = Math.max(most, Number(count));
      }
    })();
    const answers = await requests;
    await watching;
    expect(answers.every((res) => res.status === 200)).toBe(true);
    // The pool's two, plus the journal notifier's own LISTEN connection.
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(3);
  });

  it('refuse a bad ?schema= before connecting', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'nearsync-pg-multi-'));
    tempDirs.push(dataDir);
    for (const bad of ['Upper', '1digit', 'pg_catalog', 'a-b', 'a"b', 'x'.repeat(47), '']) {
      await expect(
        startServer({ dataDir, logger: silentLogger, backends: { databaseUrl: `postgres://postgres@127.0.0.1:5432/test?schema=${encodeURIComponent(bad)}` } }),
        bad,
      ).rejects.toThrow(/schema/);
    }
  });
});
