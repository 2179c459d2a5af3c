import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createClient } from 'redis';
import type { RedisTarget } from './deployment.ts';

/** Whether the PostgreSQL at `url` answers; the reason when it does not. */
export async function postgresReachable(url: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Whether the Redis at `url` answers PING; the reason when it does not. */
export async function redisReachable(url: string): Promise<string | null> {
  const client = createClient({ url, socket: { connectTimeout: 5_000, reconnectStrategy: false } });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    if (client.isOpen) await client.quit().catch(() => {});
  }
}

/**
 * The shared Redis for one deployment, under a key prefix of this run's own (REDIS_URL
 * `?prefix=`), so another run on the same Redis is never touched; cleanup deletes every key
 * under that prefix.
 */
export async function sharedRedis(url: string): Promise<RedisTarget> {
  const prefix = `nearsync_load_${randomBytes(6).toString('hex')}:`;
  const base = new URL(url);
  base.searchParams.set('prefix', prefix);
  return {
    url: base.toString(),
    port: Number(base.port || 6379),
    cleanup: () => deleteKeys(url, prefix),
  };
}

async function deleteKeys(url: string, prefix: string): Promise<void> {
  if (!/^nearsync_load_[0-9a-f]{12}:$/.test(prefix)) throw new Error(`refusing to delete keys under ${prefix}`);
  const client = createClient({ url, socket: { connectTimeout: 5_000, reconnectStrategy: false } });
  client.on('error', () => {});
  await client.connect();
  try {
    const keys: string[] = [];
    for await (const batch of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...(Array.isArray(batch) ? batch : [batch]));
    for (let i = 0; i < keys.length; i += 500) await client.unlink(keys.slice(i, i + 500));
  } finally {
    await client.quit().catch(() => {});
  }
}
