import type { RedisClientType } from 'redis';
import { StoreUnavailableError } from '../storage/store-errors.ts';

/** A node-redis client as the relay's Redis modules use it (RESP 3, no modules, no scripts). */
export type RedisClient = RedisClientType;

/** Longest wait for one Redis operation; a Redis that stopped answering must not hold a peer's event forever. */
export const REDIS_CALL_TIMEOUT_MS = 5_000;

/**
 * Runs one Redis operation of the relay. Whatever goes wrong (not connected, timed out,
 * closed, an error reply) becomes a StoreUnavailableError, so the relay answers its peer
 * `unavailable` instead of failing as if it had a bug.
 *
 * The readiness check is ours because node-redis queues MULTI and pipelines while it
 * reconnects, whatever `disableOfflineQueue` says: without it an event would wait for the
 * outage to end.
 */
export async function redisCall<T>(redis: RedisClient, what: string, operation: () => Promise<T>, timeoutMs = REDIS_CALL_TIMEOUT_MS): Promise<T> {
  if (!redis.isReady) throw new StoreUnavailableError('redis', `${what}: not connected to Redis`);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([operation(), timeout]);
  } catch (err) {
    throw new StoreUnavailableError('redis', `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/** Characters allowed in a key prefix: no glob characters, so a prefix can be SCANned and deleted safely. */
export const KEY_PREFIX_PATTERN = /^[A-Za-z0-9:_.-]{1,64}$/;
export const DEFAULT_KEY_PREFIX = 'nearsync:';
