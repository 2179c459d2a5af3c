import { MAX_RELAY_TOKENS, ValidationError, parseNamespaceId, type NamespaceId, type PeerId } from '../../protocol/index.ts';
import type { Logger } from '../log.ts';
import type { PeerDirectory } from './peer-directory.ts';
import { redisCall, type RedisClient } from './redis-calls.ts';

export interface RedisPeerDirectoryOptions {
  /** Put before every key, e.g. "nearsync:". */
  prefix: string;
  logger: Logger;
  /** Lifetime of a peer's entry without a refresh; default 60 s. */
  ttlMs?: number;
  /** How often this instance renews the entries of its own peers; default 15 s. */
  refreshMs?: number;
}

/**
 * Which namespaces each connected peer holds, shared through Redis: key `P peers:<peer id>`
 * holds the JSON list of its namespaces with a TTL. Each instance renews the entries of the
 * peers connected to it, so the peers of a crashed instance vanish within the TTL, and a
 * Redis that restarted empty is filled again by the next renewal (at once on reconnect).
 */
export class RedisPeerDirectory implements PeerDirectory {
  private readonly local = new Map<PeerId, readonly NamespaceId[]>();
  private readonly ttlMs: number;
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly onReconnect = () => this.refresh();
  private refreshFailing = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: RedisPeerDirectoryOptions,
  ) {
    this.ttlMs = options.ttlMs ?? 60_000;
    const refreshMs = options.refreshMs ?? 15_000;
    if (!(refreshMs < this.ttlMs)) throw new RangeError('the peer directory must refresh its entries more often than they expire');
    this.timer = setInterval(() => this.refresh(), refreshMs);
    this.timer.unref();
    // node-redis emits "ready" on every (re)connection; the first one happened before this existed.
    redis.on('ready', this.onReconnect);
  }

  async register(peerId: PeerId, namespaces: readonly NamespaceId[]): Promise<void> {
    this.local.set(peerId, [...namespaces]);
    await redisCall(this.redis, 'peer register', () => this.redis.set(this.key(peerId), JSON.stringify(namespaces), { expiration: { type: 'PX', value: this.ttlMs } }));
  }

  async unregister(peerId: PeerId): Promise<void> {
    this.local.delete(peerId);
    await redisCall(this.redis, 'peer unregister', () => this.redis.del(this.key(peerId)));
  }

  async namespacesOf(peerId: PeerId): Promise<readonly NamespaceId[] | null> {
    const local = this.local.get(peerId);
    if (local) return local;
    const key = this.key(peerId);
    const value = await redisCall(this.redis, 'peer lookup', () => this.redis.get(key));
    if (value === null) return null;
    try {
      return parseNamespaces(value);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      this.options.logger.warn('malformed peer entry in redis dropped', { key, field: err.field, problem: err.message });
      return null;
    }
  }

  /** Stops renewing; the entries of peers still connected lapse within the TTL. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.redis.off('ready', this.onReconnect);
  }

  /** Renews the entries of this instance's peers (and writes back any Redis lost). */
  private refresh(): void {
    if (this.local.size === 0) return;
    // Queued in one go, in order: an unregister issued after this lands after it, never before.
    const pipeline = this.redis.multi();
    for (const [peerId, namespaces] of this.local) {
      pipeline.set(this.key(peerId), JSON.stringify(namespaces), { expiration: { type: 'PX', value: this.ttlMs } });
    }
    redisCall(this.redis, 'peer refresh', () => pipeline.execAsPipeline()).then(
      () => {
        if (this.refreshFailing) this.options.logger.info('relay peer directory renewed again', { peers: this.local.size });
        this.refreshFailing = false;
      },
      (err: unknown) => {
        // Logged once per outage; the connection's own log says when Redis is back.
        if (!this.refreshFailing) this.options.logger.warn('relay peer directory renewal failed', { err: String(err) });
        this.refreshFailing = true;
      },
    );
  }

  private key(peerId: PeerId): string {
    return `${this.options.prefix}peers:${peerId}`;
  }
}

/** A peer's namespaces as stored: a JSON array of 1 to 64 distinct namespace ids. */
function parseNamespaces(value: string): NamespaceId[] {
  let list: unknown;
  try {
    list = JSON.parse(value);
  } catch {
    throw new ValidationError('namespaces', 'must be JSON');
  }
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_RELAY_TOKENS) {
    throw new ValidationError('namespaces', `must be a list of 1 to ${MAX_RELAY_TOKENS} namespaces`);
  }
  const namespaces = list.map((ns, i) => parseNamespaceId(ns, `namespaces[${i}]`));
  if (new Set(namespaces).size !== namespaces.length) throw new ValidationError('namespaces', 'must not repeat a namespace');
  return namespaces;
}
