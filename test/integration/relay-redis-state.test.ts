import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AdvertOut, NamespaceId, PeerId } from '../../src/protocol/index.ts';
import { createLogger, type Logger } from '../../src/server/log.ts';
import { InMemoryAdvertTable, type AdvertTable } from '../../src/server/relay/advert-table.ts';
import { RedisAdvertTable } from '../../src/server/relay/redis-advert-table.ts';
import type { RedisClient } from '../../src/server/relay/redis-calls.ts';
import { RedisPeerDirectory } from '../../src/server/relay/redis-peer-directory.ts';
import { StoreUnavailableError } from '../../src/server/storage/store-errors.ts';
import { deleteKeysUnder, keysUnder, openTestClient, uniquePrefix } from '../support/redis-keys.ts';
import { until } from '../support/until.ts';

const NS = 'nsAAAAAAAAAAAAAAAAAAAA' as NamespaceId;
const NS2 = 'nsBBBBBBBBBBBBBBBBBBBB' as NamespaceId;
const P1 = 'p_AAAAAAAAAAAAAAAA' as PeerId;
const P2 = 'p_BBBBBBBBBBBBBBBB' as PeerId;
const P3 = 'p_CCCCCCCCCCCCCCCC' as PeerId;
const LEASE = 90_000;

const advert = (peerId: PeerId, ns: NamespaceId, at: number, cursor = 1, label = 'L'): AdvertOut => ({ peerId, label, ns, cursor, at });

/** A logger that keeps warnings, to see what was dropped. */
function recordingLogger(): Logger & { lines: any[] } {
  const lines: any[] = [];
  const logger = createLogger('warn', (line) => lines.push(JSON.parse(line)));
  return Object.assign(logger, { lines });
}

let redis: RedisClient;
let other: RedisClient;
const prefixes: string[] = [];
const directories: RedisPeerDirectory[] = [];

function prefix(): string {
  const p = uniquePrefix('relay-state');
  prefixes.push(p);
  return p;
}

beforeAll(async () => {
  redis = await openTestClient();
  // A second connection stands in for a second relay instance.
  other = await openTestClient();
});
afterEach(async () => {
  for (const directory of directories.splice(0)) await directory.close();
});
afterAll(async () => {
  for (const p of prefixes) await deleteKeysUnder(redis, p);
  for (const p of prefixes) expect(await keysUnder(redis, p)).toEqual([]);
  redis.destroy();
  other.destroy();
});

// The same contract for the in-process table and the Redis one: the relay cannot tell them apart.
describe.each([
  ['in memory', () => new InMemoryAdvertTable() as AdvertTable],
  ['redis', () => new RedisAdvertTable(redis, { prefix: prefix(), logger: recordingLogger() }) as AdvertTable],
])('advert table (%s)', (_name, makeTable) => {
  it('keeps one advert per peer and namespace, most recent first, limited', async () => {
    const table = makeTable();
    expect(await table.put(advert(P1, NS, 10, 1), LEASE)).toBeNull();
    expect(await table.put(advert(P1, NS, 20, 2, 'Ann'), LEASE)).toEqual(advert(P1, NS, 10, 1));
    expect(await table.put(advert(P2, NS, 30), LEASE)).toBeNull();
    expect(await table.put(advert(P1, NS2, 15), LEASE)).toBeNull();
    expect(await table.list(NS, 10)).toEqual([advert(P2, NS, 30), advert(P1, NS, 20, 2, 'Ann')]);
    expect(await table.list(NS, 1)).toEqual([advert(P2, NS, 30)]);
    expect(await table.list(NS2, 10)).toEqual([advert(P1, NS2, 15)]);
    expect(await table.list('nsZZZZZZZZZZZZZZZZZZZZ' as NamespaceId, 10)).toEqual([]);
  });

  it('removes a peer from every namespace, once', async () => {
    const table = makeTable();
    await table.put(advert(P1, NS, 10), LEASE);
    await table.put(advert(P1, NS2, 50), LEASE);
    await table.put(advert(P2, NS, 40), LEASE);
    const removed = await table.removePeer(P1);
    expect(removed.sort((a, b) => a.at - b.at)).toEqual([advert(P1, NS, 10), advert(P1, NS2, 50)]);
    expect(await table.removePeer(P1)).toEqual([]);
    expect(await table.list(NS, 10)).toEqual([advert(P2, NS, 40)]);
    expect(await table.list(NS2, 10)).toEqual([]);
    // A removed peer that advertises again starts afresh.
    expect(await table.put(advert(P1, NS, 60), LEASE)).toBeNull();
  });

  it('expires the adverts heard before the cutoff, each once; the cutoff itself stays', async () => {
    const table = makeTable();
    await table.put(advert(P1, NS, 10), LEASE);
    await table.put(advert(P1, NS2, 50), LEASE);
    await table.put(advert(P2, NS, 40), LEASE);
    await table.put(advert(P3, NS, 45), LEASE);
    const expired = await table.expire(45);
    expect(expired.map((a) => [a.peerId, a.ns]).sort()).toEqual([
      [P1, NS],
      [P2, NS],
    ]);
    expect(await table.expire(45)).toEqual([]);
    expect(await table.list(NS, 10)).toEqual([advert(P3, NS, 45)]);
    expect(await table.removePeer(P1)).toEqual([advert(P1, NS2, 50)]);
    // A renewed advert is not expired by its old time.
    await table.put(advert(P3, NS, 100), LEASE);
    expect(await table.expire(60)).toEqual([]);
  });
});

describe('redis advert table', () => {
  it('keeps every key under its prefix, each with a TTL a little longer than the lease', async () => {
    const p = prefix();
    const table = new RedisAdvertTable(redis, { prefix: p, logger: recordingLogger(), keyGraceMs: 30_000 });
    await table.put(advert(P1, NS, Date.now()), 5_000);
    const keys = await keysUnder(redis, p);
    expect(keys.sort()).toEqual([`${p}adverts:by-time`, `${p}adverts:ns:${NS}`, `${p}adverts:ns:${NS}:by-time`, `${p}adverts:peer:${P1}`].sort());
    for (const key of keys) {
      const ttl = await redis.pTTL(key);
      expect(ttl).toBeGreaterThan(5_000);
      expect(ttl).toBeLessThanOrEqual(35_000);
    }
    // Removing the last advert leaves nothing behind.
    await table.removePeer(P1);
    expect(await keysUnder(redis, p)).toEqual([]);
  });

  it('shares its adverts with another instance using the same prefix, and only that one', async () => {
    const p = prefix();
    const a = new RedisAdvertTable(redis, { prefix: p, logger: recordingLogger() });
    const b = new RedisAdvertTable(other, { prefix: p, logger: recordingLogger() });
    const elsewhere = new RedisAdvertTable(other, { prefix: prefix(), logger: recordingLogger() });
    await a.put(advert(P1, NS, 10), LEASE);
    expect(await b.list(NS, 10)).toEqual([advert(P1, NS, 10)]);
    expect(await b.put(advert(P1, NS, 20, 3), LEASE)).toEqual(advert(P1, NS, 10));
    expect(await elsewhere.list(NS, 10)).toEqual([]);
    expect(await a.removePeer(P1)).toEqual([advert(P1, NS, 20, 3)]);
  });

  it('reports each expired advert to exactly one of several instances sweeping at once', async () => {
    const p = prefix();
    const writer = new RedisAdvertTable(redis, { prefix: p, logger: recordingLogger() });
    const peers = Array.from({ length: 60 }, (_, i) => `p_${String(i).padStart(16, 'x')}` as PeerId);
    for (const [i, peerId] of peers.entries()) await writer.put(advert(peerId, i % 2 ? NS : NS2, 1_000 + i), LEASE);
    // Three instances (two connections, so commands really interleave) sweep together, twice.
    const sweepers = [writer, new RedisAdvertTable(other, { prefix: p, logger: recordingLogger() }), new RedisAdvertTable(other, { prefix: p, logger: recordingLogger() })];
    const reports = (await Promise.all([...sweepers, ...sweepers].map((table) => table.expire(5_000)))).flat();
    expect(reports.map((a) => a.peerId).sort()).toEqual([...peers].sort());
    // …and a peer's own removal after the sweep reports nothing more.
    expect(await writer.removePeer(peers[0])).toEqual([]);
    expect(await keysUnder(redis, p)).toEqual([]);
  });

  it('drops malformed or misfiled values read back from Redis, and logs them', async () => {
    const p = prefix();
    const logger = recordingLogger();
    const table = new RedisAdvertTable(redis, { prefix: p, logger });
    await table.put(advert(P1, NS, 10), LEASE);
    await table.put(advert(P2, NS, 20), LEASE);
    await table.put(advert(P3, NS, 30), LEASE);
    // Someone with access to Redis writes garbage, an advert of another peer, and a bad label.
    await redis.hSet(`${p}adverts:ns:${NS}`, P1, '{not json');
    await redis.hSet(`${p}adverts:ns:${NS}`, P2, JSON.stringify(advert(P3, NS, 20)));
    await redis.hSet(`${p}adverts:ns:${NS}`, P3, JSON.stringify({ ...advert(P3, NS, 30), label: 'two\nlines' }));
    expect(await table.list(NS, 10)).toEqual([]);
    expect(logger.lines.filter((l) => l.msg === 'malformed advert data in redis dropped')).toHaveLength(3);
    // A malformed previous advert counts as none: the new one is news.
    expect(await table.put(advert(P1, NS, 40, 2), LEASE)).toBeNull();
    expect(await table.list(NS, 10)).toEqual([advert(P1, NS, 40, 2)]);
    // A malformed expiry entry is dropped without reporting anything.
    await redis.zAdd(`${p}adverts:by-time`, { score: 1, value: 'no separator' });
    await redis.sAdd(`${p}adverts:peer:${P1}`, 'bad namespace!');
    expect((await table.expire(35)).map((a) => a.peerId)).toEqual([]);
    expect(await redis.zScore(`${p}adverts:by-time`, 'no separator')).toBeNull();
    expect(await table.removePeer(P1)).toEqual([advert(P1, NS, 40, 2)]);
  });
});

describe('redis peer directory', () => {
  function directory(client: RedisClient, p: string, options: { ttlMs?: number; refreshMs?: number; logger?: Logger } = {}): RedisPeerDirectory {
    const made = new RedisPeerDirectory(client, { prefix: p, logger: options.logger ?? recordingLogger(), ...options });
    directories.push(made);
    return made;
  }

  it('tells another instance which namespaces a peer holds, until it unregisters', async () => {
    const p = prefix();
    const a = directory(redis, p);
    const b = directory(other, p);
    await a.register(P1, [NS, NS2]);
    expect(await a.namespacesOf(P1)).toEqual([NS, NS2]);
    expect(await b.namespacesOf(P1)).toEqual([NS, NS2]);
    expect(await b.namespacesOf(P2)).toBeNull();
    expect(await directory(other, prefix()).namespacesOf(P1)).toBeNull();
    const ttl = await redis.pTTL(`${p}peers:${P1}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await a.unregister(P1);
    expect(await b.namespacesOf(P1)).toBeNull();
    expect(await keysUnder(redis, p)).toEqual([]);
  });

  it('renews its own peers, so an entry Redis lost comes back', async () => {
    const p = prefix();
    const a = directory(redis, p, { ttlMs: 2_000, refreshMs: 100 });
    const b = directory(other, p);
    await a.register(P1, [NS]);
    // What a Redis restart does to the entry.
    await redis.del(`${p}peers:${P1}`);
    await until(async () => (await b.namespacesOf(P1)) !== null, 5_000, 'the entry to be written back');
    expect(await b.namespacesOf(P1)).toEqual([NS]);
  });

  it('lets the entries of a peer whose instance stopped renewing lapse', async () => {
    const p = prefix();
    const a = directory(redis, p, { ttlMs: 300, refreshMs: 100 });
    const b = directory(other, p);
    await a.register(P1, [NS]);
    await a.close();
    await until(async () => (await b.namespacesOf(P1)) === null, 5_000, 'the entry to lapse');
  });

  it('drops a malformed entry read back from Redis', async () => {
    const p = prefix();
    const logger = recordingLogger();
    const b = directory(other, p, { logger });
    for (const value of ['{', '[]', '"ns"', JSON.stringify(['bad ns']), JSON.stringify([NS, NS])]) {
      await redis.set(`${p}peers:${P2}`, value);
      expect(await b.namespacesOf(P2)).toBeNull();
    }
    expect(logger.lines.filter((l) => l.msg === 'malformed peer entry in redis dropped')).toHaveLength(5);
    await redis.del(`${p}peers:${P2}`);
  });

  it('fails with StoreUnavailableError, not a hang, when its client is not connected', async () => {
    const closed = await openTestClient();
    closed.destroy();
    const table = new RedisAdvertTable(closed, { prefix: prefix(), logger: recordingLogger() });
    await expect(table.put(advert(P1, NS, 1), LEASE)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(table.list(NS, 10)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(directory(closed, prefix()).namespacesOf(P1)).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});
