import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PG_MIGRATIONS } from '../../src/server/storage/pg-migrations.ts';
import { MIGRATIONS } from '../../src/server/storage/sqlite-metadata-store.ts';
import { createTestSchema, type TestSchema } from '../support/pg-test-db.ts';

/** `npm run migrate` as an operator runs it: a child process configured by the environment. */

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runMigrate(env: Record<string, string>): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  // Only what the test sets selects the engine, whatever the runner's own environment says.
  if (!('DATABASE_URL' in env)) delete childEnv.DATABASE_URL;
  if (!('DATA_DIR' in env)) delete childEnv.DATA_DIR;
  return new Promise((resolve, reject) => {
    const child = spawn('npm', ['run', '--silent', 'migrate'], { cwd: repoRoot, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function versions(run: Run): { before: number; after: number } {
  const before = /^schema version before: (\d+)$/m.exec(run.stdout);
  const after = /^schema version after: (\d+)$/m.exec(run.stdout);
  if (!before || !after) throw new Error(`unexpected output: ${run.stdout} ${run.stderr}`);
  return { before: Number(before[1]), after: Number(after[1]) };
}

const latestSqlite = MIGRATIONS[MIGRATIONS.length - 1].version;
const latestPg = PG_MIGRATIONS[PG_MIGRATIONS.length - 1].version;

describe('npm run migrate with SQLite', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'nearsync-migrate-'));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('creates and migrates the database in DATA_DIR, then finds nothing to do', async () => {
    const target = join(dataDir, 'fresh');
    const first = await runMigrate({ DATA_DIR: target });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`sqlite ${join(target, 'nearsync.db')}`);
    expect(versions(first)).toEqual({ before: 0, after: latestSqlite });
    const db = new Database(join(target, 'nearsync.db'), { readonly: true });
    try {
      expect(db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all()).toEqual(MIGRATIONS.map((m) => m.version));
      expect(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'journal'").pluck().get()).toBe(1);
    } finally {
      db.close();
    }
    const again = await runMigrate({ DATA_DIR: target });
    expect(again.code).toBe(0);
    expect(versions(again)).toEqual({ before: latestSqlite, after: latestSqlite });
  });

  it('exits 1 with a clear message for a database from a newer server', async () => {
    const target = join(dataDir, 'newer');
    expect((await runMigrate({ DATA_DIR: target })).code).toBe(0);
    const db = new Database(join(target, 'nearsync.db'));
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, ?, ?)').run('future', Date.now());
    db.close();
    const run = await runMigrate({ DATA_DIR: target });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^nearsync migrate failed: database schema version 999 is newer/m);
  });
});

describe('npm run migrate with PostgreSQL', () => {
  let schema: TestSchema;
  beforeAll(async () => {
    schema = await createTestSchema('migrate', { create: false });
  });
  afterAll(async () => {
    await schema?.drop();
  });

  it('creates the schema, applies the migrations, then finds nothing to do', async () => {
    const first = await runMigrate({ DATABASE_URL: schema.databaseUrl });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`(schema ${schema.name})`);
    expect(versions(first)).toEqual({ before: 0, after: latestPg });
    const recorded = await schema.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
    expect(recorded.map((r) => r.version)).toEqual(PG_MIGRATIONS.map((m) => m.version));
    const again = await runMigrate({ DATABASE_URL: schema.databaseUrl });
    expect(again.code).toBe(0);
    expect(versions(again)).toEqual({ before: latestPg, after: latestPg });
  });

  it('exits 1 with a clear message when PostgreSQL cannot be reached or the URL is wrong', async () => {
    const refused = await runMigrate({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/test' });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^nearsync migrate failed: .*ECONNREFUSED/m);
    const badSchema = await runMigrate({ DATABASE_URL: `${schema.databaseUrl}&schema=again` });
    expect(badSchema.code).toBe(1);
    expect(badSchema.stderr).toMatch(/schema= once/);
  });
});
