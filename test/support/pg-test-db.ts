import pg from 'pg';
import { randomBytes } from 'node:crypto';
import { parsePostgresUrl } from '../../src/server/storage/pg-target.ts';

/**
 * The PostgreSQL the tests use: loopback, trust auth, database `test`. Each test run works
 * in a schema of its own (named nstest_<label>_<pid>_<random>), so runs that share the
 * server, at the same time or not, never see each other's rows or notifications.
 */
export const TEST_DATABASE_URL = process.env.NEARSYNC_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

export interface TestSchema {
  name: string;
  /** TEST_DATABASE_URL with ?schema=name: what the server under test gets as DATABASE_URL. */
  databaseUrl: string;
  /** Runs one statement in the schema on a short-lived connection; returns the rows. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  /** Runs `work` with one short-lived connection in the schema. */
  withClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T>;
  /** Drops the schema and everything in it (also when the server under test created it). */
  drop(): Promise<void>;
}

/**
 * A fresh, uniquely named schema. With `create: false` only the name is reserved, so a test
 * can watch the server create it.
 */
export async function createTestSchema(label = 'it', options: { create?: boolean } = {}): Promise<TestSchema> {
  if (!/^[a-z0-9]{1,12}$/.test(label)) throw new Error(`schema label ${JSON.stringify(label)}: 1-12 of a-z and 0-9`);
  const name = `nstest_${label}_${process.pid}_${randomBytes(4).toString('hex')}`;
  const databaseUrl = withSchema(TEST_DATABASE_URL, name);
  if (options.create !== false) await runStatement(TEST_DATABASE_URL, `CREATE SCHEMA "${name}"`);
  return {
    name,
    databaseUrl,
    query: (text, values) => runStatement(databaseUrl, text, values),
    withClient: (work) => withClient(databaseUrl, work),
    drop: async () => {
      await runStatement(TEST_DATABASE_URL, `DROP SCHEMA IF EXISTS "${name}" CASCADE`);
    },
  };
}

/** `url` with `?schema=name` added (nearsync's own parameter, see pg-target.ts). */
export function withSchema(url: string, schema: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`;
}

/** One statement on a connection of its own, in the schema the URL selects. */
export function runStatement<R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, text: string, values?: unknown[]): Promise<R[]> {
  return withClient(url, async (client) => (await client.query<R>(text, values)).rows);
}

/** A connection of its own for `work`, in the schema the URL selects; closed afterwards. */
export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...parsePostgresUrl(url).clientConfig, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}
