import { ValidationError, parseAdvertOut, parseNamespaceId, parsePeerId, type AdvertOut, type NamespaceId, type PeerId } from '../../protocol/index.ts';
import type { Logger } from '../log.ts';
import type { AdvertTable } from './advert-table.ts';
import { redisCall, type RedisClient } from './redis-calls.ts';

export interface RedisAdvertTableOptions {
  /** Put before every key, e.g. "nearsync:". */
  prefix: string;
  logger: Logger;
  /** How much longer than an advert's lease its keys live in Redis; default 60 s (longer than any sweep interval). */
  keyGraceMs?: number;
  /** Most adverts one expire() removes; the rest go on the next sweep. Default 1000. */
  expireBatch?: number;
}

/*
 * Keys (P = prefix):
 *   P adverts:ns:<ns>          hash    peer id → advert JSON           (the current adverts of ns)
 *   P adverts:ns:<ns>:by-time  zset    peer id, score = at             (list order)
 *   P adverts:peer:<peer id>   set     namespaces the peer advertises  (removePeer)
 *   P adverts:by-time          zset    "<ns>/<peer id>", score = at    (expiry, across namespaces)
 * Every write renews each key's TTL to lease + grace: when no relay is left to sweep, the
 * keys lapse by themselves instead of leaking.
 */

// Removes one advert only if it is still older than the cutoff (it may have been renewed on
// another instance since the candidates were read), in one atomic step: of all the instances
// sweeping at once, exactly one gets the advert back and broadcasts its peer-left.
// KEYS: by-time index, ns hash, ns by-time zset, peer set. ARGV: member, peer id, ns, cutoff.
const EXPIRE_ONE = `
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not at) or tonumber(at) >= tonumber(ARGV[4]) then return false end
redis.call('ZREM', KEYS[1], ARGV[1])
local advert = redis.call('HGET', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[3])
return advert
`;

const MEMBER_SEPARATOR = '/';

/** The advert table shared by every relay instance through Redis (semantics of InMemoryAdvertTable). */
export class RedisAdvertTable implements AdvertTable {
  private readonly keyGraceMs: number;
  private readonly expireBatch: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: RedisAdvertTableOptions,
  ) {
    this.keyGraceMs = options.keyGraceMs ?? 60_000;
    this.expireBatch = options.expireBatch ?? 1000;
  }

  async put(advert: AdvertOut, leaseMs: number): Promise<AdvertOut | null> {
    const keyTtlMs = Math.ceil(leaseMs + this.keyGraceMs);
    const adverts = this.namespaceKey(advert.ns);
    const byTime = this.namespaceByTimeKey(advert.ns);
    const peer = this.peerKey(advert.peerId);
    const index = this.indexKey();
    const replies = await redisCall(this.redis, 'advert put', () =>
      this.redis
        .multi()
        .hGet(adverts, advert.peerId)
        .hSet(adverts, advert.peerId, JSON.stringify(advert))
        .zAdd(byTime, { score: advert.at, value: advert.peerId })
        .sAdd(peer, advert.ns)
        .zAdd(index, { score: advert.at, value: member(advert.ns, advert.peerId) })
        .pExpire(adverts, keyTtlMs)
        .pExpire(byTime, keyTtlMs)
        .pExpire(peer, keyTtlMs)
        .pExpire(index, keyTtlMs)
        .exec(),
    );
    return this.decode(replies[0], advert.ns, advert.peerId);
  }

  async list(ns: NamespaceId, limit: number): Promise<AdvertOut[]> {
    if (limit <= 0) return [];
    const peerIds = await redisCall(this.redis, 'advert list', () => this.redis.zRange(this.namespaceByTimeKey(ns), 0, limit - 1, { REV: true }));
    if (peerIds.length === 0) return [];
    const values = await redisCall(this.redis, 'advert list', () => this.redis.hmGet(this.namespaceKey(ns), peerIds));
    const list: AdvertOut[] = [];
    peerIds.forEach((peerId, i) => {
      // Gone between the two reads (removed or expired meanwhile): simply not listed.
      if (values[i] === null || values[i] === undefined) return;
      const advert = this.decode(values[i], ns, peerId);
      if (advert) list.push(advert);
    });
    return list;
  }

  async removePeer(peerId: PeerId): Promise<AdvertOut[]> {
    const peer = this.peerKey(peerId);
    const stored = await redisCall(this.redis, 'advert remove', () => this.redis.sMembers(peer));
    const namespaces = stored.flatMap((ns) => this.checked(peer, () => parseNamespaceId(ns, 'namespace')) ?? []);
    const transaction = this.redis.multi();
    for (const ns of namespaces) {
      transaction
        .hGet(this.namespaceKey(ns), peerId)
        .hDel(this.namespaceKey(ns), peerId)
        .zRem(this.namespaceByTimeKey(ns), peerId)
        .zRem(this.indexKey(), member(ns, peerId));
    }
    transaction.del(peer);
    const replies = await redisCall(this.redis, 'advert remove', () => transaction.exec());
    const removed: AdvertOut[] = [];
    namespaces.forEach((ns, i) => {
      // HDEL says whether this call removed it: an advert that a sweep expired meanwhile was reported there.
      if (Number(replies[i * 4 + 1]) !== 1) return;
      const advert = this.decode(replies[i * 4], ns, peerId);
      if (advert) removed.push(advert);
    });
    return removed;
  }

  async expire(cutoff: number): Promise<AdvertOut[]> {
    const index = this.indexKey();
    const candidates = await redisCall(this.redis, 'advert expiry', () =>
      this.redis.zRange(index, '-inf', `(${cutoff}`, { BY: 'SCORE', LIMIT: { offset: 0, count: this.expireBatch } }),
    );
    const expired = await Promise.all(
      candidates.map(async (candidate) => {
        const parsed = this.parseMember(candidate);
        if (!parsed) {
          await redisCall(this.redis, 'advert expiry', () => this.redis.zRem(index, candidate));
          return null;
        }
        const { ns, peerId } = parsed;
        const keys = [index, this.namespaceKey(ns), this.namespaceByTimeKey(ns), this.peerKey(peerId)];
        const reply = await redisCall(this.redis, 'advert expiry', () =>
          this.redis.eval(EXPIRE_ONE, { keys, arguments: [candidate, peerId, ns, String(cutoff)] }),
        );
        return reply === null ? null : this.decode(reply, ns, peerId);
      }),
    );
    return expired.filter((advert): advert is AdvertOut => advert !== null);
  }

  /**
   * An advert read back from Redis, checked like any input from outside the process: it must
   * parse and belong to the namespace and peer it was filed under. Anything else is dropped.
   */
  private decode(value: unknown, ns: NamespaceId, peerId: string): AdvertOut | null {
    if (value === null || value === undefined) return null;
    return this.checked(`${this.namespaceKey(ns)} ${peerId}`, () => {
      if (typeof value !== 'string') throw new ValidationError('advert', 'must be a JSON string');
      let json: unknown;
      try {
        json = JSON.parse(value);
      } catch {
        throw new ValidationError('advert', 'must be JSON');
      }
      const advert = parseAdvertOut(json);
      if (advert.ns !== ns || advert.peerId !== peerId) throw new ValidationError('advert', 'is filed under another namespace or peer');
      return advert;
    });
  }

  private parseMember(candidate: string): { ns: NamespaceId; peerId: PeerId } | null {
    return this.checked(this.indexKey(), () => {
      const at = candidate.indexOf(MEMBER_SEPARATOR);
      if (at < 0) throw new ValidationError('member', `must be "<ns>${MEMBER_SEPARATOR}<peer id>"`);
      return { ns: parseNamespaceId(candidate.slice(0, at), 'member.ns'), peerId: parsePeerId(candidate.slice(at + 1), 'member.peerId') };
    });
  }

  /** Reads a value that came from `key` with `read`; logs and answers null when it is malformed. */
  private checked<T>(key: string, read: () => T): T | null {
    try {
      return read();
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      this.options.logger.warn('malformed advert data in redis dropped', { key, field: err.field, problem: err.message });
      return null;
    }
  }

  private namespaceKey(ns: NamespaceId): string {
    return `${this.options.prefix}adverts:ns:${ns}`;
  }

  private namespaceByTimeKey(ns: NamespaceId): string {
    return `${this.options.prefix}adverts:ns:${ns}:by-time`;
  }

  private peerKey(peerId: string): string {
    return `${this.options.prefix}adverts:peer:${peerId}`;
  }

  private indexKey(): string {
    return `${this.options.prefix}adverts:by-time`;
  }
}

function member(ns: NamespaceId, peerId: PeerId): string {
  return `${ns}${MEMBER_SEPARATOR}${peerId}`;
}
