import pg from 'pg';
import { resolve } from 'node:path';
import { envBackends } from './config.ts';
import type { MigrationOutcome } from './storage/migration.ts';
import { errorMessage } from './storage/pg-errors.ts';
import { migratePostgres } from './storage/pg-migrations.ts';
import { parsePostgresUrl } from './storage/pg-target.ts';
import { migrateSqlite } from './storage/sqlite-migrations.ts';
import { openSqliteDatabase, sqliteDatabaseFile } from './storage/sqlite-metadata-store.ts';

/**
 * `npm run migrate`: brings the metadata schema of the configured engine up to date and
 * prints the version before and after. DATABASE_URL selects PostgreSQL (honouring
 * `?schema=`); otherwise the SQLite database in DATA_DIR (default ./data). The server
 * migrates at start as well; this lets an operator do it ahead of a rolling deploy.
 */
async function main(): Promise<void> {
  const { databaseUrl } = envBackends();
  let where: string;
  let outcome: MigrationOutcome;
  if (databaseUrl) {
    const target = parsePostgresUrl(databaseUrl);
    where = `postgres ${target.display}${target.schema === null ? '' : ` (schema ${target.schema})`}`;
    const client = new pg.Client({ ...target.clientConfig, application_name: 'nearsync-migrate', connectionTimeoutMillis: 10_000 });
    // A connection lost mid-run rejects the pending query; the event alone must not crash first.
    client.on('error', () => {});
    await client.connect();
    try {
      outcome = await migratePostgres(client, target.schema);
    } finally {
      await client.end().catch(() => {});
    }
  } else {
    const file = sqliteDatabaseFile(resolve(process.env.DATA_DIR || './data'));
    where = `sqlite ${file}`;
    const db = openSqliteDatabase(file);
    try {
      outcome = migrateSqlite(db);
    } finally {
      db.close();
    }
  }
  console.log(`nearsync migrate: ${where}`);
  console.log(`schema version before: ${outcome.from}`);
  console.log(`schema version after: ${outcome.to}`);
}

main().catch((err: unknown) => {
  console.error(`nearsync migrate failed: ${errorMessage(err)}`);
  process.exit(1);
});
