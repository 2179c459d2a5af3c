import Database from 'better-sqlite3';
import type pg from 'pg';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { BackendConfig } from '../../src/server/backends/index.ts';
import { createTestSchema } from './pg-test-db.ts';
import { s3Blocks } from './s3-block-engine.ts';

/**
 * The engine combinations the HTTP API suite runs against (parametrised, not copied).
 * A case is one metadata engine plus one block engine; each engine knows how to provision
 * itself for one harness and how a test reads what it holds, beside the server rather than
 * through its API (to check that a refused request stored nothing). A new combination is
 * one `combine(…)` line in BACKEND_CASES.
 * SQLite with block files always runs; the others need their engine on loopback.
 */
export interface BackendCase {
  /** e.g. 'sqlite+files', 'postgres+files'. */
  name: string;
  metadata: MetadataEngine['name'];
  blocks: BlockEngine['name'];
  /** Fresh engines for one harness (a new schema, a new bucket); teardown drops them. */
  provision(): Promise<ProvisionedBackends>;
}

export interface ProvisionedBackends {
  backends: BackendConfig;
  /** What the server has stored, read beside it; compare before and after a refused request. */
  storedState(dataDir: string): Promise<StoredState>;
  /** Everything the metadata engine holds, as bytes (e.g. to check no token is stored in clear). */
  metadataBytes(dataDir: string): Promise<Buffer>;
  teardown(): Promise<void>;
}

export interface StoredState {
  /** Row count of every metadata table. */
  tables: Record<string, number>;
  /** Hashes of the stored blocks, sorted (anything stored out of place appears as is). */
  blocks: string[];
  /** Uploads under way or left behind (temp files, unfinished objects). */
  partial: string[];
}

/** One engine, set up for one harness. */
export interface ProvisionedEngine {
  config: BackendConfig;
  teardown(): Promise<void>;
}

export interface MetadataEngine {
  name: 'sqlite' | 'postgres';
  provision(): Promise<
    ProvisionedEngine & {
      tableCounts(dataDir: string): Promise<Record<string, number>>;
      bytes(dataDir: string): Promise<Buffer>;
    }
  >;
}

export interface BlockEngine {
  name: 'files' | 's3';
  provision(): Promise<ProvisionedEngine & { contents(dataDir: string): Promise<{ blocks: string[]; partial: string[] }> }>;
}

export function combine(metadata: MetadataEngine, blocks: BlockEngine): BackendCase {
  return {
    name: `${metadata.name}+${blocks.name}`,
    metadata: metadata.name,
    blocks: blocks.name,
    async provision() {
      const meta = await metadata.provision();
      let store;
      try {
        store = await blocks.provision();
      } catch (err) {
        await meta.teardown();
        throw err;
      }
      return {
        backends: { ...meta.config, ...store.config },
        async storedState(dataDir) {
          const { blocks: stored, partial } = await store.contents(dataDir);
          return { tables: await meta.tableCounts(dataDir), blocks: stored, partial };
        },
        metadataBytes: (dataDir) => meta.bytes(dataDir),
        async teardown() {
          await store.teardown();
          await meta.teardown();
        },
      };
    },
  };
}

/** SQLite in the data dir: nothing to provision; read through a second, read-only connection. */
export const sqliteMetadata: MetadataEngine = {
  name: 'sqlite',
  async provision() {
    return {
      config: {},
      async tableCounts(dataDir) {
        const db = new Database(join(dataDir, 'nearsync.db'), { readonly: true });
        try {
          const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[];
          return Object.fromEntries(tables.map((t) => [t, db.prepare(`SELECT count(*) FROM "${t}"`).pluck().get() as number]));
        } finally {
          db.close();
        }
      },
      async bytes(dataDir) {
        const files = (await readdir(dataDir)).filter((f) => f.startsWith('nearsync.db')).sort();
        return Buffer.concat(await Promise.all(files.map((f) => readFile(join(dataDir, f)))));
      },
      teardown: async () => {},
    };
  },
};

/** PostgreSQL in a schema of its own, dropped at teardown. */
export const postgresMetadata: MetadataEngine = {
  name: 'postgres',
  async provision() {
    const schema = await createTestSchema('it');
    const tableNames = async (client: pg.Client) =>
      (
        await client.query<{ table_name: string }>(
          "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name",
          [schema.name],
        )
      ).rows.map((row) => row.table_name);
    return {
      config: { databaseUrl: schema.databaseUrl },
      tableCounts: () =>
        schema.withClient(async (client) => {
          const tables = await tableNames(client);
          if (tables.length === 0) return {};
          const counts = await client.query<{ t: string; n: number }>(
            tables.map((t) => `SELECT '${t}' AS t, count(*)::integer AS n FROM "${t}"`).join(' UNION ALL '),
          );
          return Object.fromEntries(counts.rows.map((row) => [row.t, row.n]));
        }),
      bytes: () =>
        schema.withClient(async (client) => {
          const parts: string[] = [];
          for (const table of await tableNames(client)) {
            for (const row of (await client.query<{ t: string }>(`SELECT t::text AS t FROM "${table}" t`)).rows) parts.push(row.t);
          }
          return Buffer.from(parts.join('\n'));
        }),
      teardown: () => schema.drop(),
    };
  },
};

/** Block files under DATA_DIR/blocks (FsBlockStore's `ab/cd/<hash>` layout, temp files in tmp/). */
export const fileBlocks: BlockEngine = {
  name: 'files',
  async provision() {
    return {
      config: {},
      async contents(dataDir) {
        const blocks = (await blockFiles(dataDir)).map((path) => /^([0-9a-f]{2})\/([0-9a-f]{2})\/(\1\2[0-9a-f]{60})$/.exec(path)?.[3] ?? path);
        return { blocks: blocks.sort(), partial: await tempFiles(dataDir) };
      },
      teardown: async () => {},
    };
  },
};

/** Every block file under the data dir (relative paths, temp files excluded), sorted. */
export async function blockFiles(dataDir: string): Promise<string[]> {
  const root = join(dataDir, 'blocks');
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && !relative(root, join(e.parentPath, e.name)).startsWith('tmp'))
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

/** Temp files of uploads under way (or left by a crash) in the data dir's block store. */
export async function tempFiles(dataDir: string): Promise<string[]> {
  return (await readdir(join(dataDir, 'blocks', 'tmp'))).sort();
}

export const sqliteFiles = combine(sqliteMetadata, fileBlocks);
export const postgresFiles = combine(postgresMetadata, fileBlocks);
export const sqliteS3 = combine(sqliteMetadata, s3Blocks);

export const BACKEND_CASES: readonly BackendCase[] = [sqliteFiles, postgresFiles, sqliteS3];
