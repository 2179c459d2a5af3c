import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import { startPrivateRedis, type PrivateRedis } from '../support/private-redis.ts';
import { keysUnder, openTestClient, relayRedisUrl, uniquePrefix } from '../support/redis-keys.ts';
import { until } from '../support/until.ts';
import { api, createWorkspace, type Member } from './helpers.ts';
import { RelayClient, sleep } from './relay-helpers.ts';

// Redis crashes (SIGKILL) and comes back empty, under two relay instances. A Redis of this
// test's own, so stopping it disturbs no other test.

const OFFER = { type: 'offer', sdp: 'v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n' };
/** The test clients re-advertise this often, as browsers do every 30 s. */
const ADVERT_PERIOD_MS = 1_000;

let redis: PrivateRedis;
let dataDir: string;
const prefix = uniquePrefix('restart');
const servers: RunningServer[] = [];
const clients: RelayClient[] = [];
let A: RunningServer;
let B: RunningServer;
let X: Member;

async function instance(redisUrl: string): Promise<RunningServer> {
  const server = await startServer({ host: '127.0.0.1', port: 0, dataDir, staticDir: null, logger: silentLogger, backends: { redisUrl } });
  servers.push(server);
  return server;
}

async function connect(server: RunningServer, tokens: string[]): Promise<RelayClient> {
  const client = await RelayClient.connect(server.url, { tokens });
  clients.push(client);
  return client;
}

/** Sends a signal until the target has one from `from` (a signal sent before recovery is refused, not queued). */
async function signalGetsThrough(from: RelayClient, to: RelayClient): Promise<void> {
  const before = to.all('signal').length;
  await until(
    async () => {
      from.socket.emit('signal', { to: to.peerId, data: OFFER });
      await sleep(100);
      return to.all('signal').length > before;
    },
    15_000,
    `a signal from ${from.peerId} to reach ${to.peerId}`,
  );
  expect(to.all('signal').at(-1)).toEqual({ from: from.peerId, namespaces: [X.ns], data: OFFER });
}

beforeAll(async () => {
  redis = await startPrivateRedis();
  dataDir = await mkdtemp(join(tmpdir(), 'nearsync-relay-restart-'));
  A = await instance(relayRedisUrl(redis.url, prefix));
  B = await instance(relayRedisUrl(redis.url, prefix));
  X = await createWorkspace(A.url, 'X');
});
afterEach(() => {
  for (const client of clients.splice(0)) client.close();
});
afterAll(async () => {
  for (const server of servers) await server.close();
  await redis?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('relay on Redis: outage and restart', () => {
  it('refuses to start, with a clear error, when Redis cannot be reached', async () => {
    const gone = await startPrivateRedis();
    await gone.stop();
    await expect(instance(gone.url)).rejects.toThrow(/^REDIS_URL: cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+/);
  });

  it('keeps serving while Redis is down, answers unavailable, and recovers when Redis restarts empty', async () => {
    const p1 = await connect(A, [X.token]);
    const p2 = await connect(B, [X.token]);
    const p3 = await connect(B, [X.token]);
    const C = await instance(relayRedisUrl(redis.url, prefix));
    const onC = await connect(C, [X.token]);
    onC.advert(X.ns, 1);
    p1.keepAdvertising(X.ns, 5, ADVERT_PERIOD_MS);
    await p2.next('advert', (a) => a.peerId === p1.peerId);
    await signalGetsThrough(p2, p1);

    await redis.kill();

    // What needs Redis is refused with "unavailable" (not a strike: the socket stays).
    await until(
      async () => {
        p2.advert(X.ns, 1);
        await sleep(50);
        return p2.all('relay-error').some((e) => e.code === 'unavailable');
      },
      10_000,
      'an advert to be refused as unavailable',
    );
    const refusals = p2.all('relay-error').length;
    p2.socket.emit('signal', { to: p1.peerId, data: OFFER });
    p2.socket.emit('peers', { ns: X.ns });
    await until(() => p2.all('relay-error').length === refusals + 2, 5000, 'two more refusals');
    expect(p2.all('relay-error').map((e) => e.code)).toEqual(Array(refusals + 2).fill('unavailable'));
    expect(p2.socket.connected).toBe(true);
    // A peer joining now is welcomed and told its peers list is unavailable.
    const late = await connect(B, [X.token]);
    expect(await late.next('relay-error')).toMatchObject({ code: 'unavailable' });
    expect(late.all('peers')).toEqual([]);
    // What does not need Redis still works: signals between peers of one instance, the HTTP API.
    p3.socket.emit('signal', { to: p2.peerId, data: { type: 'connect' } });
    expect(await p2.next('signal', (s) => s.from === p3.peerId)).toEqual({ from: p3.peerId, namespaces: [X.ns], data: { type: 'connect' } });
    expect((await api(B.url, 'GET', `/api/v1/ns/${X.ns}`, { token: X.token })).status).toBe(200);
    // An instance shuts down without hanging on the missing Redis.
    await C.close();
    expect(await onC.disconnected()).toBe('transport close');

    const advertsBefore = p2.all('advert').filter((a) => a.peerId === p1.peerId).length;
    await redis.start();

    // p1's next periodic advert finds an empty table and is relayed again, across instances.
    await p2.next('advert', () => p2.all('advert').filter((a) => a.peerId === p1.peerId).length > advertsBefore, 15_000);
    await until(async () => (await p2.peers(X.ns)).peers.some((a: any) => a.peerId === p1.peerId), 5000, 'p1 in the peers list');
    // Both instances re-registered their peers: signals cross again, both ways.
    await signalGetsThrough(p2, p1);
    await signalGetsThrough(p1, p2);
    const probe = await openTestClient(redis.url);
    try {
      const keys = await keysUnder(probe, prefix);
      for (const peer of [p1, p2, p3, late]) expect(keys).toContain(`${prefix}peers:${peer.peerId}`);
    } finally {
      probe.destroy();
    }
    expect(p1.malformed).toEqual([]);
    expect(p2.malformed).toEqual([]);
  });
});
