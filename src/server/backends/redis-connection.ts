import { createClient } from 'redis';
import { redactUrl } from '../config.ts';
import type { Logger } from '../log.ts';
import { DEFAULT_KEY_PREFIX, KEY_PREFIX_PATTERN, type RedisClient } from '../relay/redis-calls.ts';

/** Where the relay's Redis is: REDIS_URL, with nearsync's own `prefix` parameter taken out. */
export interface RedisLocation {
  /** The URL handed to node-redis. */
  url: string;
  /** Before every key and pub/sub channel, so several deployments (or test runs) can share one Redis. */
  prefix: string;
  /** The URL without its password, for logs and errors. */
  display: string;
}

/** `redis[s]://[user:password@]host[:port][/db][?prefix=name:]`; default prefix "nearsync:". */
export function parseRedisLocation(text: string): RedisLocation {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`REDIS_URL must be a redis:// or rediss:// URL, not ${JSON.stringify(redactUrl(text))}`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new Error(`REDIS_URL must be a redis:// or rediss:// URL, not ${JSON.stringify(redactUrl(text))}`);
  }
  const prefix = url.searchParams.get('prefix') ?? DEFAULT_KEY_PREFIX;
  if (!KEY_PREFIX_PATTERN.test(prefix)) {
    throw new Error(`REDIS_URL: prefix must be 1 to 64 characters of [A-Za-z0-9:_.-], not ${JSON.stringify(prefix)}`);
  }
  url.searchParams.delete('prefix');
  const clean = url.toString();
  return { url: clean, prefix, display: redactUrl(clean) };
}

export interface RedisConnectOptions {
  /** What this connection is for, in logs: e.g. "relay commands". */
  role: string;
  /**
   * Queue commands while reconnecting (true) or refuse them at once (false). Only the
   * subscriber queues: its (un)subscriptions must survive an outage; everything else would
   * rather fail than arrive stale.
   */
  offlineQueue: boolean;
  /** How long to keep trying at start-up before giving up with an error; default 5 s. */
  startupTimeoutMs?: number;
}

/** Reconnection backoff after the first connection: 100 ms doubling up to 2 s, with jitter. */
const backoffMs = (retries: number) => Math.min(100 * 2 ** Math.min(retries, 5), 2_000) + Math.floor(Math.random() * 100);
const CONNECT_TIMEOUT_MS = 5_000;

/**
 * Opens a node-redis client that reconnects by itself for as long as the server runs, logs an
 * outage once (not every attempt), and at start-up fails with a clear error instead of
 * waiting forever for a Redis that is not there.
 */
export async function connectRedis(location: RedisLocation, logger: Logger, options: RedisConnectOptions): Promise<RedisClient> {
  const startupDeadline = Date.now() + (options.startupTimeoutMs ?? 5_000);
  let connectedOnce = false;
  let down = false;
  let attempts = 0;
  const client: RedisClient = createClient({
    url: location.url,
    disableOfflineQueue: !options.offlineQueue,
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectStrategy: (retries, cause) => {
        attempts = retries;
        if (!connectedOnce && Date.now() >= startupDeadline) {
          return new Error(`REDIS_URL: cannot reach Redis at ${location.display}: ${cause.message}`, { cause });
        }
        return backoffMs(retries);
      },
    },
  });
  client.on('error', (err: Error) => {
    // Every failed reconnection attempt emits one: say it once per outage.
    if (down || !connectedOnce) return logger.debug('redis connection error', { role: options.role, err: err.message });
    down = true;
    logger.error('redis connection lost; reconnecting', { role: options.role, redis: location.display, err: err.message });
  });
  client.on('ready', () => {
    if (down) logger.info('redis connection restored', { role: options.role, attempts });
    down = false;
    connectedOnce = true;
  });
  try {
    await client.connect();
  } catch (err) {
    if (client.isOpen) client.destroy();
    if (err instanceof Error && err.message.startsWith('REDIS_URL:')) throw err;
    throw new Error(`REDIS_URL: cannot reach Redis at ${location.display}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return client;
}

/** Closes a client, letting its pending commands finish for at most `graceMs`. */
export async function closeRedis(client: RedisClient, graceMs = 1_000): Promise<void> {
  if (!client.isOpen) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cut = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, graceMs);
  });
  await Promise.race([client.close().catch(() => {}), cut]);
  clearTimeout(timer);
  if (client.isOpen) client.destroy();
}
