import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { peersOfConnections, pidsNamed } from './proc.ts';
import { ServerProcess } from './server-process.ts';
import type { Teardown } from './teardown.ts';

export type MetadataEngine = 'sqlite' | 'postgres';

export interface DeploymentSpec {
  metadata: MetadataEngine;
  instances: number;
  /** Share the relay through Redis (needed for more than one instance). */
  redis: boolean;
}

/** Where the shared engines are; the bench makes its own schema and keys inside them. */
export interface EngineTargets {
  /** postgres://… of a database the bench may create and drop a schema in. */
  databaseUrl: string;
  /** redis://… shared by the instances of a deployment, plus how to find and clean up after it. */
  redis: () => Promise<RedisTarget>;
}

export interface RedisTarget {
  url: string;
  /** TCP port, to find the redis-server process serving the instances. */
  port: number;
  /** Removes what this run left in Redis. */
  cleanup(): Promise<void>;
}

/**
 * The server instances of one configuration (SQLite on one instance, PostgreSQL on one or
 * two, with the relay shared through Redis), their engines' processes for CPU readings, and
 * the schema and keys made for them. Everything is registered with the teardown at creation.
 */
export class Deployment {
  private constructor(
    readonly spec: DeploymentSpec,
    readonly servers: ServerProcess[],
    private readonly databasePort: number | null,
    private readonly redisPort: number | null,
  ) {}

  /** e.g. `sqlite`, `postgres`, `postgres+redis`. */
  get engine(): string {
    return this.spec.metadata + (this.spec.redis ? '+redis' : '');
  }

  get urls(): string[] {
    return this.servers.map((server) => server.url);
  }

  static async start(spec: DeploymentSpec, targets: EngineTargets, teardown: Teardown, log: (message: string) => void): Promise<Deployment> {
    if (spec.instances > 1 && (spec.metadata !== 'postgres' || !spec.redis)) {
      throw new Error('several instances need PostgreSQL metadata and the Redis relay');
    }
    let databaseUrl: string | undefined;
    let databasePort: number | null = null;
    if (spec.metadata === 'postgres') {
      const schema = await createSchema(targets.databaseUrl);
      teardown.add(`schema ${schema}`, () => dropSchema(targets.databaseUrl, schema));
      log(`created PostgreSQL schema ${schema}`);
      databaseUrl = withQuery(targets.databaseUrl, 'schema', schema);
      databasePort = Number(new URL(targets.databaseUrl).port || 5432);
    }
    let redisUrl: string | undefined;
    let redisPort: number | null = null;
    if (spec.redis) {
      const redis = await targets.redis();
      teardown.add(`redis ${redis.url}`, () => redis.cleanup());
      redisUrl = redis.url;
      redisPort = redis.port;
    }
    const servers: ServerProcess[] = [];
    for (let i = 0; i < spec.instances; i++) {
      const name = `${spec.metadata}${spec.redis ? '+redis' : ''}#${i}`;
      const server = await ServerProcess.start(name, { databaseUrl, redisUrl });
      teardown.add(`server ${name}`, () => server.stop(), () => server.killNow());
      servers.push(server);
    }
    log(`${spec.instances} ${spec.metadata} instance(s) up: ${servers.map((s) => `${s.url} (pid ${s.pid})`).join(', ')}`);
    return new Deployment(spec, servers, databasePort, redisPort);
  }

  /** PostgreSQL backends serving these instances (not other runs' backends); none for SQLite, which runs inside the server. */
  databasePids(): number[] {
    if (this.databasePort === null) return [];
    const postgres = pidsNamed('postgres');
    return [...new Set(this.servers.flatMap((server) => peersOfConnections(server.pid, this.databasePort!, postgres)))];
  }

  /** The redis-server these instances talk to (shared with others when it is the machine's Redis). */
  redisPids(): number[] {
    if (this.redisPort === null) return [];
    const redis = pidsNamed('redis-server');
    return [...new Set(this.servers.flatMap((server) => peersOfConnections(server.pid, this.redisPort!, redis)))];
  }
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A fresh schema for this run; the name is ours alone, so a concurrent run cannot collide. */
async function createSchema(url: string): Promise<string> {
  const schema = `nearsync_load_${randomBytes(6).toString('hex')}`;
  await withClient(url, (client) => client.query(`CREATE SCHEMA ${schema}`));
  return schema;
}

async function dropSchema(url: string, schema: string): Promise<void> {
  if (!/^nearsync_load_[0-9a-f]{12}$/.test(schema)) throw new Error(`refusing to drop schema ${schema}`);
  await withClient(url, (client) => client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
}

function withQuery(url: string, key: string, value: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}${key}=${encodeURIComponent(value)}`;
}
