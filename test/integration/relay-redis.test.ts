import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import type { RedisClient } from '../../src/server/relay/redis-calls.ts';
import { SHARED_REDIS_URL, deleteKeysUnder, keysUnder, openTestClient, relayRedisUrl, uniquePrefix } from '../support/redis-keys.ts';
import { until } from '../support/until.ts';
import { createWorkspace, type Member } from './helpers.ts';
import { RelayClient, sleep } from './relay-helpers.ts';

// Two relay instances (A and B) over one Redis and one data directory, as behind a load balancer.

const OFFER = { type: 'offer', sdp: 'v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n' };
const ANSWER = { type: 'answer', sdp: 'v=0\r\no=- 7731400430051336461 2 IN IP4 127.0.0.1\r\ns=-\r\n' };

let dataDir: string;
let redis: RedisClient;
const prefixes: string[] = [];
const servers: RunningServer[] = [];
const clients: RelayClient[] = [];
let A: RunningServer;
let B: RunningServer;
let X: Member;
let Y: Member;

/** A relay instance over the shared data directory, its relay state under `prefix` in the shared Redis. */
async function instance(prefix: string, relay: ServerOptions['relay'] = {}): Promise<RunningServer> {
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    dataDir,
    staticDir: null,
    logger: silentLogger,
    backends: { redisUrl: relayRedisUrl(SHARED_REDIS_URL, prefix) },
    relay,
  });
  servers.push(server);
  return server;
}

function newPrefix(): string {
  const prefix = uniquePrefix('relay');
  prefixes.push(prefix);
  return prefix;
}

async function connect(server: RunningServer, tokens: string[], label?: string): Promise<RelayClient> {
  const client = await RelayClient.connect(server.url, label === undefined ? { tokens } : { tokens, label });
  clients.push(client);
  return client;
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'nearsync-relay-redis-'));
  redis = await openTestClient();
  const prefix = newPrefix();
  A = await instance(prefix);
  B = await instance(prefix);
  X = await createWorkspace(A.url, 'X');
  Y = await createWorkspace(B.url, 'Y');
});
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await until(() => servers.every((s) => s.metrics().relaySockets === 0), 3000, 'relay sockets to close');
});
afterAll(async () => {
  for (const server of servers) await server.close();
  // Instances that shut down cleanly take their peers' adverts and entries with them.
  for (const prefix of prefixes) expect(await keysUnder(redis, prefix)).toEqual([]);
  for (const prefix of prefixes) await deleteKeysUnder(redis, prefix);
  redis.destroy();
  await rm(dataDir, { recursive: true, force: true });
});

describe('relay across two instances on Redis', () => {
  it('lists the adverts of peers on A in the peers reply of a peer joining on B', async () => {
    const p1 = await connect(A, [X.token], 'on A');
    const observer = await connect(A, [X.token]);
    p1.advert(X.ns, 5);
    // Relayed only once stored.
    await observer.next('advert', (a) => a.peerId === p1.peerId);
    const p2 = await connect(B, [X.token]);
    const list = await p2.next('peers', (l) => l.ns === X.ns);
    expect(list.peers).toEqual([{ peerId: p1.peerId, label: 'on A', ns: X.ns, cursor: 5, at: list.peers[0]?.at }]);
    expect((await p2.peers(X.ns)).peers.map((a: any) => a.peerId)).toEqual([p1.peerId]);
    expect(p2.malformed).toEqual([]);
  });

  it('carries live adverts both ways, once each', async () => {
    const p1 = await connect(A, [X.token]);
    const p2 = await connect(B, [X.token]);
    const p3 = await connect(A, [X.token]);
    p1.advert(X.ns, 7);
    expect(await p2.next('advert', (a) => a.peerId === p1.peerId)).toMatchObject({ peerId: p1.peerId, ns: X.ns, cursor: 7 });
    p2.advert(X.ns, 9);
    expect(await p1.next('advert', (a) => a.peerId === p2.peerId)).toMatchObject({ peerId: p2.peerId, ns: X.ns, cursor: 9 });
    await p3.next('advert', (a) => a.peerId === p2.peerId);
    // Round trips through both instances, then count: nothing arrives twice, nothing comes back to its sender.
    await p1.peers(X.ns);
    await p2.peers(X.ns);
    await p3.peers(X.ns);
    expect(p3.all('advert').map((a) => [a.peerId, a.cursor])).toEqual([
      [p1.peerId, 7],
      [p2.peerId, 9],
    ]);
    expect(p1.all('advert').map((a) => a.peerId)).toEqual([p2.peerId]);
    expect(p2.all('advert').map((a) => a.peerId)).toEqual([p1.peerId]);
    // An unchanged refresh is not broadcast again on either instance.
    p1.advert(X.ns, 7);
    p1.advert(X.ns, 8);
    await p2.next('advert', (a) => a.cursor === 8);
    expect(p2.all('advert').map((a) => a.cursor)).toEqual([7, 8]);
  });

  it('delivers signals both ways with the relay`s from and the shared namespaces', async () => {
    const p1 = await connect(A, [X.token, Y.token]);
    const p2 = await connect(B, [X.token]);
    const sentByA = A.metrics().signalsRelayed;
    p1.socket.emit('signal', { to: p2.peerId, data: OFFER });
    expect(await p2.next('signal')).toEqual({ from: p1.peerId, namespaces: [X.ns], data: OFFER });
    p2.socket.emit('signal', { to: p1.peerId, data: ANSWER });
    expect(await p1.next('signal')).toEqual({ from: p2.peerId, namespaces: [X.ns], data: ANSWER });
    expect(A.metrics().signalsRelayed).toBe(sentByA + 1);
    expect(p1.all('relay-error')).toEqual([]);
    expect(p2.all('relay-error')).toEqual([]);
  });

  it('refuses a forged from; the target gets nothing', async () => {
    const p1 = await connect(A, [X.token]);
    const p2 = await connect(B, [X.token]);
    const p3 = await connect(B, [X.token]);
    p2.socket.emit('signal', { to: p1.peerId, from: p3.peerId, data: OFFER });
    const error = await p2.next('relay-error');
    expect(error.code).toBe('invalid');
    expect(error.message).toContain('signal.from');
    // A later genuine signal from p3 arrives, and is the only one.
    p3.socket.emit('signal', { to: p1.peerId, data: { type: 'connect' } });
    expect(await p1.next('signal')).toEqual({ from: p3.peerId, namespaces: [X.ns], data: { type: 'connect' } });
    await p1.peers(X.ns);
    expect(p1.all('signal')).toHaveLength(1);
  });

  it('tells peers on B when a peer on A disconnects, and forgets its adverts', async () => {
    const p1 = await connect(A, [X.token]);
    const p2 = await connect(B, [X.token]);
    p1.advert(X.ns, 3);
    await p2.next('advert', (a) => a.peerId === p1.peerId);
    p1.close();
    expect(await p2.next('peer-left')).toEqual({ peerId: p1.peerId, ns: X.ns });
    expect((await p2.peers(X.ns)).peers).toEqual([]);
    // Signals to it are refused like signals to an unknown peer.
    p2.socket.emit('signal', { to: p1.peerId, data: OFFER });
    expect((await p2.next('relay-error')).code).toBe('no_shared_namespace');
  });

  it('never shows a peer of Y on B the adverts of X, nor lets it signal a peer of X on A', async () => {
    const inX = await connect(A, [X.token]);
    const inY = await connect(B, [Y.token]);
    const inXonB = await connect(B, [X.token]);
    inX.advert(X.ns, 4);
    await inXonB.next('advert', (a) => a.peerId === inX.peerId);
    inY.socket.emit('signal', { to: inX.peerId, data: OFFER });
    expect(await inY.next('relay-error')).toMatchObject({ code: 'no_shared_namespace' });
    inY.socket.emit('peers', { ns: X.ns });
    await until(() => inY.all('relay-error').length === 2);
    expect(inY.all('relay-error')[1].code).toBe('forbidden');
    await inY.peers(Y.ns);
    await inX.peers(X.ns);
    expect(inY.all('advert')).toEqual([]);
    expect(inY.all('peers').every((l) => l.ns === Y.ns && l.peers.length === 0)).toBe(true);
    expect(inX.all('signal')).toEqual([]);
  });

  it('keeps B`s peers connected when A shuts down, and tells them A`s peers left', async () => {
    const prefix = newPrefix();
    const a = await instance(prefix);
    const b = await instance(prefix);
    const onA = await connect(a, [X.token]);
    const onB = await connect(b, [X.token]);
    onA.advert(X.ns, 1);
    await onB.next('advert', (ad) => ad.peerId === onA.peerId);
    await a.close();
    expect(await onB.next('peer-left')).toEqual({ peerId: onA.peerId, ns: X.ns });
    // A transport close, not "io server disconnect": the client reconnects, through a load balancer to another instance.
    expect(await onA.disconnected()).toBe('transport close');
    expect(onB.socket.connected).toBe(true);
    expect(b.metrics().relaySockets).toBe(1);
    expect((await onB.peers(X.ns)).peers).toEqual([]);
  });
});

describe('advert expiry across instances', () => {
  it('broadcasts peer-left exactly once although every instance sweeps', async () => {
    const prefix = newPrefix();
    const relay = { advertTtlMs: 800, sweepIntervalMs: 50 };
    const e1 = await instance(prefix, relay);
    const e2 = await instance(prefix, relay);
    const e3 = await instance(prefix, relay);
    const silent = await connect(e1, [X.token]);
    const watchers = [await connect(e1, [X.token]), await connect(e2, [X.token]), await connect(e3, [X.token])];
    silent.advert(X.ns, 2);
    for (const w of watchers) await w.next('advert', (a) => a.peerId === silent.peerId);
    for (const w of watchers) expect(await w.next('peer-left', undefined, 5000)).toEqual({ peerId: silent.peerId, ns: X.ns });
    // Many more sweeps on all three instances: still one peer-left each.
    await sleep(1000);
    for (const w of watchers) await w.peers(X.ns);
    for (const w of watchers) expect(w.all('peer-left')).toHaveLength(1);
    expect(silent.all('peer-left')).toEqual([]);
    // The peer is still connected: its next advert is news again everywhere.
    silent.advert(X.ns, 2);
    for (const w of watchers) expect((await w.next('advert', (a) => a.peerId === silent.peerId && w.all('advert').length === 2)).cursor).toBe(2);
  });
});
