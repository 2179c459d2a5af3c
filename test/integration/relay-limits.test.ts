import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createWorkspace, startHarness, until, type Harness, type Member } from './helpers.ts';
import { RelayClient, sleep } from './relay-helpers.ts';

// A relay with short timeouts and a tight rate limit, so expiry and flooding show in a test.
const TTL_MS = 400;
let h: Harness;
let A: Member;
const clients: RelayClient[] = [];

async function connect(tokens: string[]): Promise<RelayClient> {
  const client = await RelayClient.connect(h.url, { tokens });
  clients.push(client);
  return client;
}

beforeAll(async () => {
  h = await startHarness({ relay: { advertTtlMs: TTL_MS, sweepIntervalMs: 50, eventsPerSecond: 20, eventBurst: 40 } });
  A = await createWorkspace(h.url, 'A');
});
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await until(() => h.server.metrics().relaySockets === 0, 3000, 'relay sockets to close');
});
afterAll(async () => {
  await h.stop();
});

describe('advert expiry', () => {
  it('drops an advert unheard for the timeout and tells the others; the peer can advertise again', async () => {
    const p1 = await connect([A.token]);
    const p2 = await connect([A.token]);
    p1.advert(A.ns, 3);
    await p2.next('advert');
    const sent = Date.now();
    expect(await p2.next('peer-left', () => true, 3000)).toEqual({ peerId: p1.peerId, ns: A.ns });
    expect(Date.now() - sent).toBeGreaterThanOrEqual(TTL_MS - 100);
    expect((await p2.peers(A.ns)).peers).toEqual([]);
    // The expired peer itself is not told about itself, and is still connected.
    expect(p1.all('peer-left')).toEqual([]);
    expect(p1.socket.connected).toBe(true);
    p1.advert(A.ns, 3);
    expect((await p2.next('advert', (a) => a.at >= sent + TTL_MS - 100)).cursor).toBe(3);
  });

  it('keeps an advert that is refreshed in time', async () => {
    const p1 = await connect([A.token]);
    const p2 = await connect([A.token]);
    p1.advert(A.ns, 1);
    await p2.next('advert');
    for (let i = 0; i < 6; i++) {
      await sleep(TTL_MS / 3);
      p1.advert(A.ns, 1);
    }
    expect(p2.all('peer-left')).toEqual([]);
    expect((await p2.peers(A.ns)).peers.map((a: any) => a.peerId)).toEqual([p1.peerId]);
  });
});

describe('rate limit', () => {
  it('disconnects a flooding socket while another keeps working', async () => {
    const flood = await connect([A.token]);
    const good = await connect([A.token]);
    const other = await connect([A.token]);
    for (let i = 0; i < 200; i++) flood.advert(A.ns, i);
    expect(await flood.disconnected()).toBe('io server disconnect');
    expect(flood.all('relay-error').at(-1)).toMatchObject({ code: 'rate_limited' });
    // The burst went through before the limit hit: at most `eventBurst` adverts were relayed.
    await until(() => other.all('peer-left').length === 1);
    expect(other.all('advert').length).toBeLessThanOrEqual(40);
    good.advert(A.ns, 7);
    expect((await other.next('advert', (a) => a.peerId === good.peerId)).cursor).toBe(7);
  });

  it('lets a socket use its burst, then send at the sustained rate', async () => {
    const steady = await connect([A.token]);
    // 35 at once, then 30 more at 15/s: 65 events, more than the burst of 40, under 20/s.
    for (let i = 0; i < 35; i++) steady.advert(A.ns, i);
    for (let i = 35; i < 65; i++) {
      await sleep(1000 / 15);
      steady.advert(A.ns, i);
    }
    expect((await steady.peers(A.ns)).peers).toEqual([]);
    expect(steady.socket.connected).toBe(true);
    expect(steady.all('relay-error')).toEqual([]);
  });
});
