import { randomBytes } from 'node:crypto';
import { createClient } from 'redis';
import type { RedisClient } from '../../src/server/relay/redis-calls.ts';

/** The Redis every test run may share (loopback); a test keeps to its own key prefix there. */
export const SHARED_REDIS_URL = 'redis://127.0.0.1:6379';

/** A key prefix no other test (or concurrent test run) uses. */
export function uniquePrefix(what = 'test'): string {
  return `nearsync-${what}-${randomBytes(6).toString('hex')}:`;
}

/** REDIS_URL for a relay whose keys and channels start with `prefix`. */
export function relayRedisUrl(url: string, prefix: string): string {
  return `${url}?prefix=${encodeURIComponent(prefix)}`;
}

/** A plain client for reading and tampering with a test's keys. */
export async function openTestClient(url = SHARED_REDIS_URL): Promise<RedisClient> {
  const client: RedisClient = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** Every key under `prefix` (SCAN, never KEYS: the Redis may be shared). */
export async function keysUnder(client: RedisClient, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const batch of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) keys.push(...batch);
  return keys;
}

/** Deletes every key under `prefix`; resolves to how many there were. */
export async function deleteKeysUnder(client: RedisClient, prefix: string): Promise<number> {
  const keys = await keysUnder(client, prefix);
  if (keys.length > 0) await client.del(keys);
  return keys.length;
}
