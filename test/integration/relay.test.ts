import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseClientConfig } from '../../src/protocol/index.ts';
import { startServer } from '../../src/server/app.ts';
import { api, createWorkspace, startHarness, until, type Harness, type Member } from './helpers.ts';
import { RelayClient, refusal, sleep } from './relay-helpers.ts';

const OFFER = { type: 'offer', sdp: 'v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n' };
const CANDIDATE = { type: 'candidate', candidate: { candidate: 'candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host', sdpMLineIndex: 0, sdpMid: '0' } };

let h: Harness;
let A: Member;
let B: Member;
let C: Member;
const clients: RelayClient[] = [];

async function connect(tokens: string[], label?: string, transports?: string[]): Promise<RelayClient> {
  const client = await RelayClient.connect(h.url, label === undefined ? { tokens } : { tokens, label }, { transports });
  clients.push(client);
  return client;
}

beforeAll(async () => {
  h = await startHarness();
  [A, B, C] = [await createWorkspace(h.url, 'A'), await createWorkspace(h.url, 'B'), await createWorkspace(h.url, 'C')];
});
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await until(() => h.server.metrics().relaySockets === 0, 3000, 'relay sockets to close');
});
afterAll(async () => {
  await h.stop();
});

describe('relay handshake', () => {
  it('welcomes a socket with a relay-assigned peer id and the namespaces of its tokens', async () => {
    const p = await connect([A.token, B.token]);
    expect(p.peerId).toMatch(/^p_[A-Za-z0-9_-]{16}$/);
    expect(p.peerId).not.toBe(p.socket.id);
    expect(p.welcome.namespaces.sort()).toEqual([A.ns, B.ns].sort());
    expect(p.welcome.lanBridge).toBeUndefined(); // no LAN bridge on this server
    // One (empty) peers list per namespace, right after the welcome.
    expect(await p.next('peers', (l) => l.ns === A.ns)).toEqual({ ns: A.ns, peers: [] });
    expect(await p.next('peers', (l) => l.ns === B.ns)).toEqual({ ns: B.ns, peers: [] });
    expect(p.malformed).toEqual([]);
  });

  it('gives every connection its own peer id, even with the same token', async () => {
    const p1 = await connect([A.token]);
    const p2 = await connect([A.token]);
    expect(p1.peerId).not.toBe(p2.peerId);
  });

  it('accepts a second token of the same namespace, and a joined member token', async () => {
    const joined = await api(h.url, 'POST', '/api/v1/join', { json: { invite: A.invite } });
    const p = await connect([A.token, joined.body.token, A.token]);
    expect(p.welcome.namespaces).toEqual([A.ns]);
  });

  it('works over HTTP long-polling too (the client default)', async () => {
    const p = await connect([A.token], undefined, ['polling', 'websocket']);
    expect(p.welcome.namespaces).toEqual([A.ns]);
    expect(await p.peers(A.ns)).toEqual({ ns: A.ns, peers: [] });
  });

  it.each([
    ['an unknown token', () => ({ tokens: ['x'.repeat(43)] })],
    ['a known and an unknown token', () => ({ tokens: [A.token, 'y'.repeat(43)] })],
    ['a malformed token', () => ({ tokens: [A.token.slice(1)] })],
    ['no tokens', () => ({ tokens: [] })],
    ['tokens that are not a list', () => ({ tokens: A.token })],
    ['no auth at all', () => undefined],
    ['65 tokens', () => ({ tokens: Array(65).fill(A.token) })],
  ])('refuses %s with connect_error "unauthorized"', async (_what, auth) => {
    const before = h.server.metrics().relaySockets;
    const refused = await refusal(h.url, auth());
    expect(refused.message).toBe('unauthorized');
    expect(h.server.metrics().relaySockets).toBe(before);
  });

  it('refuses a bad label or an unknown auth field with "invalid" and the field', async () => {
    expect(await refusal(h.url, { tokens: [A.token], label: 'two\nlines' })).toEqual({
      message: 'invalid',
      data: { field: 'auth.label', message: 'auth.label: must not contain control characters' },
    });
    expect(await refusal(h.url, { tokens: [A.token], label: 'x'.repeat(41) })).toMatchObject({ message: 'invalid' });
    expect(await refusal(h.url, { tokens: [A.token], peerId: 'p_AAAAAAAAAAAAAAAA' })).toMatchObject({
      message: 'invalid',
      data: { field: 'auth.peerId' },
    });
    // Over polling, the refusal reads the same.
    expect((await refusal(h.url, { tokens: ['x'.repeat(43)] }, ['polling'])).message).toBe('unauthorized');
  });
});

describe('relay adverts', () => {
  it('relays an advert to the other members with the relay-assigned peer id and label', async () => {
    const p1 = await connect([A.token], '  Ann\u0301 ');
    const p2 = await connect([A.token]);
    const before = h.server.metrics().advertsRelayed;
    const sent = Date.now();
    p1.advert(A.ns, 5);
    const advert = await p2.next('advert');
    expect(advert).toEqual({ peerId: p1.peerId, label: 'Ann\u0301'.normalize('NFC'), ns: A.ns, cursor: 5, at: advert.at });
    expect(advert.at).toBeGreaterThanOrEqual(sent - 1000);
    expect(advert.at).toBeLessThanOrEqual(Date.now() + 1000);
    expect(h.server.metrics().advertsRelayed).toBe(before + 1);
    // The sender does not get its own advert back.
    await p1.peers(A.ns);
    expect(p1.all('advert')).toEqual([]);
  });

  it('labels a peer "Browser" when it gives no label', async () => {
    const p1 = await connect([A.token]);
    const p2 = await connect([A.token]);
    p1.advert(A.ns, 1);
    expect((await p2.next('advert')).label).toBe('Browser');
  });

  it('refuses an advert that carries its own peerId (forged), and delivers nothing', async () => {
    const p1 = await connect([A.token]);
    const p2 = await connect([A.token]);
    p1.socket.emit('advert', { ns: A.ns, cursor: 9, peerId: p2.peerId });
    const error = await p1.next('relay-error');
    expect(error.code).toBe('invalid');
    expect(error.message).toContain('advert.peerId');
    expect((await p2.peers(A.ns)).peers).toEqual([]);
    expect(p2.all('advert')).toEqual([]);
  });

  it.each([
    ['a negative cursor', { cursor: -1 }],
    ['a fractional cursor', { cursor: 1.5 }],
    ['a string cursor', { cursor: '3' }],
  ])('refuses %s', async (_what, fields) => {
    const p1 = await connect([A.token]);
    const p2 = await connect([A.token]);
    p1.socket.emit('advert', { ns: A.ns, ...fields });
    expect((await p1.next('relay-error')).code).toBe('invalid');
    expect((await p2.peers(A.ns)).peers).toEqual([]);
  });

  it('gives a late joiner the current adverts of each namespace, newest cursor per peer', async () => {
    const p1 = await connect([A.token], 'one');
    const p2 = await connect([A.token, B.token], 'two');
    p1.advert(A.ns, 3);
    p1.advert(A.ns, 4);
    p2.advert(A.ns, 7);
    p2.advert(B.ns, 2);
    await until(async () => (await p1.peers(A.ns)).peers.length === 1);
    await until(async () => (await p2.peers(A.ns)).peers.some((a: any) => a.cursor === 4));
    const late = await connect([A.token, B.token]);
    const listA = await late.next('peers', (l) => l.ns === A.ns);
    expect(listA.peers.map((a: any) => [a.peerId, a.label, a.cursor]).sort()).toEqual(
      [
        [p1.peerId, 'one', 4],
        [p2.peerId, 'two', 7],
      ].sort(),
    );
    const listB = await late.next('peers', (l) => l.ns === B.ns);
    expect(listB.peers.map((a: any) => [a.peerId, a.cursor])).toEqual([[p2.peerId, 2]]);
    // The list a peer asks for leaves out its own advert.
    expect((await p2.peers(A.ns)).peers.map((a: any) => a.peerId)).toEqual([p1.peerId]);
  });

  it('answers a peers request without an acknowledgement with a peers event', async () => {
    const p1 = await connect([A.token]);
    const p2 = await connect([A.token]);
    p1.advert(A.ns, 1);
    await p2.next('advert');
    const count = p2.all('peers').length;
    p2.socket.emit('peers', { ns: A.ns });
    await until(() => p2.all('peers').length === count + 1);
    expect(p2.all('peers').at(-1).peers.map((a: any) => a.peerId)).toEqual([p1.peerId]);
  });

  it('refuses an advert or a peers request for a namespace the socket holds no token of', async () => {
    const inA = await connect([A.token]);
    const inB = await connect([B.token]);
    inA.advert(B.ns, 1);
    expect(await inA.next('relay-error')).toMatchObject({ code: 'forbidden' });
    inA.socket.emit('peers', { ns: B.ns });
    await until(() => inA.all('relay-error').length === 2);
    expect(inA.all('relay-error').map((e) => e.code)).toEqual(['forbidden', 'forbidden']);
    expect((await inB.peers(B.ns)).peers).toEqual([]);
    expect(inB.all('advert')).toEqual([]);
  });

  it('never shows a socket with only X`s token the adverts of Y', async () => {
    const both = await connect([A.token, B.token]);
    const onlyA = await connect([A.token]);
    const onlyB = await connect([B.token]);
    both.advert(B.ns, 11);
    both.advert(A.ns, 10);
    await onlyA.next('advert');
    await onlyB.next('advert');
    await onlyA.peers(A.ns);
    expect(onlyA.all('advert').map((a) => [a.ns, a.cursor])).toEqual([[A.ns, 10]]);
    expect(onlyB.all('advert').map((a) => [a.ns, a.cursor])).toEqual([[B.ns, 11]]);
    expect(onlyA.all('peers').every((l) => l.ns === A.ns)).toBe(true);
  });

  it('renews an advert with an unchanged cursor without broadcasting it again', async () => {
    const p1 = await connect([A.token]);
    const p2 = await connect([A.token]);
    p1.advert(A.ns, 2);
    await p2.next('advert');
    const relayed = h.server.metrics().advertsRelayed;
    p1.advert(A.ns, 2);
    p1.advert(A.ns, 3);
    await p2.next('advert', (a) => a.cursor === 3);
    expect(p2.all('advert').map((a) => a.cursor)).toEqual([2, 3]);
    expect(h.server.metrics().advertsRelayed).toBe(relayed + 1);
    // A lower cursor (a peer that lost data) is news too.
    p1.advert(A.ns, 0);
    await p2.next('advert', (a) => a.cursor === 0);
  });

  it('tells the others when a peer disconnects, and forgets its adverts', async () => {
    const p1 = await connect([A.token, B.token]);
    const p2 = await connect([A.token]);
    const p3 = await connect([B.token]);
    p1.advert(A.ns, 1);
    p1.advert(B.ns, 1);
    await p2.next('advert');
    await p3.next('advert');
    p1.close();
    expect(await p2.next('peer-left')).toEqual({ peerId: p1.peerId, ns: A.ns });
    expect(await p3.next('peer-left')).toEqual({ peerId: p1.peerId, ns: B.ns });
    expect((await p2.peers(A.ns)).peers).toEqual([]);
    const late = await connect([A.token]);
    expect((await late.next('peers')).peers).toEqual([]);
  });
});

describe('relay signals', () => {
  it('delivers a signal between peers that share a namespace, with the relay`s from and the shared namespaces', async () => {
    const p1 = await connect([A.token, B.token]);
    const p2 = await connect([A.token, C.token]);
    const before = h.server.metrics().signalsRelayed;
    p1.socket.emit('signal', { to: p2.peerId, data: OFFER });
    expect(await p2.next('signal')).toEqual({ from: p1.peerId, namespaces: [A.ns], data: OFFER });
    p2.socket.emit('signal', { to: p1.peerId, data: CANDIDATE });
    expect(await p1.next('signal')).toEqual({ from: p2.peerId, namespaces: [A.ns], data: CANDIDATE });
    expect(h.server.metrics().signalsRelayed).toBe(before + 2);
  });

  it('lists every shared namespace', async () => {
    const p1 = await connect([A.token, B.token, C.token]);
    const p2 = await connect([C.token, A.token]);
    p1.socket.emit('signal', { to: p2.peerId, data: { type: 'connect' } });
    const signal = await p2.next('signal');
    expect(signal.namespaces.sort()).toEqual([A.ns, C.ns].sort());
  });

  it('refuses a signal to a peer only in another namespace, or to an unknown peer, the same way', async () => {
    const inA = await connect([A.token]);
    const inB = await connect([B.token]);
    const before = h.server.metrics().signalsRelayed;
    inA.socket.emit('signal', { to: inB.peerId, data: OFFER });
    const error = await inA.next('relay-error');
    expect(error.code).toBe('no_shared_namespace');
    inA.socket.emit('signal', { to: 'p_AAAAAAAAAAAAAAAA', data: OFFER });
    await until(() => inA.all('relay-error').length === 2);
    expect(inA.all('relay-error')[1].code).toBe('no_shared_namespace');
    await inB.peers(B.ns);
    expect(inB.all('signal')).toEqual([]);
    expect(h.server.metrics().signalsRelayed).toBe(before);
    // Not a strike: a peer that just left is a race, not misbehaviour.
    for (let i = 0; i < 20; i++) inA.socket.emit('signal', { to: inB.peerId, data: OFFER });
    await until(() => inA.all('relay-error').length === 22);
    expect(inA.socket.connected).toBe(true);
  });

  it('refuses a forged from, a signal to itself and malformed data', async () => {
    const p1 = await connect([A.token]);
    const p2 = await connect([A.token]);
    p1.socket.emit('signal', { to: p2.peerId, from: 'p_AAAAAAAAAAAAAAAA', data: OFFER });
    p1.socket.emit('signal', { to: p1.peerId, data: OFFER });
    p1.socket.emit('signal', { to: p2.peerId, data: { type: 'offer', sdp: 'x'.repeat(70 * 1024) } });
    p1.socket.emit('signal', { to: p2.peerId, data: '{"type":"offer"}' });
    await until(() => p1.all('relay-error').length === 4);
    expect(p1.all('relay-error').map((e) => e.code)).toEqual(['invalid', 'invalid', 'invalid', 'invalid']);
    expect(p1.all('relay-error')[0].message).toContain('signal.from');
    await p2.peers(A.ns);
    expect(p2.all('signal')).toEqual([]);
  });
});

describe('relay misbehaviour', () => {
  it('refuses unknown events and extra arguments', async () => {
    const p = await connect([A.token]);
    p.socket.emit('hello', { ns: A.ns });
    p.socket.emit('advert', { ns: A.ns, cursor: 1 }, 'extra');
    p.socket.emit('advert');
    await until(() => p.all('relay-error').length === 3);
    expect(p.all('relay-error').map((e) => e.code)).toEqual(['unknown_event', 'invalid', 'invalid']);
  });

  it('disconnects a socket after too many refused events; the others keep working', async () => {
    const bad = await connect([A.token]);
    const good = await connect([A.token]);
    const other = await connect([A.token]);
    for (let i = 0; i < 10; i++) bad.socket.emit('advert', { ns: 'nope', cursor: i });
    expect(await bad.disconnected()).toBe('io server disconnect');
    expect(bad.all('relay-error').at(-1).code).toBe('too_many_errors');
    good.advert(A.ns, 1);
    expect((await other.next('advert')).peerId).toBe(good.peerId);
  });

  it('disconnects a socket that sends a message over the size limit; the others keep working', async () => {
    const big = await connect([A.token]);
    const good = await connect([A.token]);
    const other = await connect([A.token]);
    big.socket.emit('signal', { to: good.peerId, data: { type: 'offer', sdp: 'x'.repeat(200 * 1024) } });
    expect(await big.disconnected()).toMatch(/^transport (close|error)$/);
    await until(() => h.server.metrics().relaySockets === 2);
    good.socket.emit('signal', { to: other.peerId, data: OFFER });
    expect((await other.next('signal')).from).toBe(good.peerId);
    expect(good.all('signal')).toEqual([]);
  });

  it('counts relay sockets and shows the counters in GET /api/v1/metrics', async () => {
    const start = h.server.metrics().relaySockets;
    const p1 = await connect([A.token]);
    const p2 = await connect([A.token]);
    await until(() => h.server.metrics().relaySockets === start + 2);
    const body = (await api(h.url, 'GET', '/api/v1/metrics')).body;
    expect(body).toMatchObject({ relaySockets: start + 2 });
    expect(typeof body.advertsRelayed).toBe('number');
    expect(typeof body.signalsRelayed).toBe('number');
    p1.close();
    p2.close();
    await until(() => h.server.metrics().relaySockets === start);
  });
});

describe('GET /api/v1/config', () => {
  it('hands out no ICE servers by default, without a token', async () => {
    const res = await api(h.url, 'GET', '/api/v1/config');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(parseClientConfig(res.body)).toEqual({ iceServers: [] });
  });

  it('hands out the configured ICE servers, and a server refuses bad ones at start', async () => {
    const iceServers = [{ urls: 'stun:stun.example.com:3478' }, { urls: ['turn:turn.example.com'], username: 'u', credential: 'p' }];
    const other = await startHarness({ iceServers });
    try {
      expect((await api(other.url, 'GET', '/api/v1/config')).body).toEqual({ iceServers });
    } finally {
      await other.stop();
    }
    await expect(startServer({ dataDir: h.dataDir, iceServers: [{ urls: 'http://x' }] as never })).rejects.toThrow(/iceServers\[0\]\.urls/);
    expect((await api(h.url, 'POST', '/api/v1/config')).status).toBe(405);
  });
});

describe('relay shutdown', () => {
  it('disconnects peers and closes promptly while sockets are open', async () => {
    const other = await startHarness();
    const m = await createWorkspace(other.url);
    const ws = await RelayClient.connect(other.url, { tokens: [m.token] });
    const polling = await RelayClient.connect(other.url, { tokens: [m.token] }, { transports: ['polling'] });
    await sleep(50);
    const started = Date.now();
    await other.stop();
    expect(Date.now() - started).toBeLessThan(2000);
    await ws.disconnected();
    await polling.disconnected();
    ws.close();
    polling.close();
  });
});
