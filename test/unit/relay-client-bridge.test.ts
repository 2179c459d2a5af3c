import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type Socket } from 'socket.io';
import { afterEach, describe, expect, it } from 'vitest';
import { BridgeFetchError, RelayClient, type RelayClientEvents } from '../../src/app/peers/relay-client.ts';
import { BRIDGE_BATCH_QUERY, PIECE_SIZE, RELAY_PATH, type BlockHash, type NamespaceId, type PeerId } from '../../src/protocol/index.ts';

const NS = 'gLYh2GuQa-XXMRoUUKJCRg' as NamespaceId;
const PEER = 'p_ZiqhjNqqU5qtr-04' as PeerId;
const HASH = 'ab'.repeat(32) as BlockHash;

/**
 * The page's relay client (the thing under test) against a real socket.io server on loopback
 * that plays a bridge: for each streamed bridge-fetch it sends the events `plan` gives (each
 * awaited for its ack, as the bridge does), then the verdict.
 */
type Plan = Array<{ offset: number; length: number }>;

let http: HttpServer | null = null;
let io: Server | null = null;
let client: RelayClient | null = null;

afterEach(async () => {
  client?.close();
  client = null;
  await new Promise<void>((resolve) => (io ? io.close(() => resolve()) : resolve()));
  io = null;
  http = null;
});

const noEvents: RelayClientEvents = {
  welcome: () => undefined,
  peers: () => undefined,
  advert: () => undefined,
  peerLeft: () => undefined,
  signal: () => undefined,
  relayError: () => undefined,
  disconnected: () => undefined,
};

async function bridgeServer(plan: Plan, size: number): Promise<{ origin: string; queries: unknown[]; acks: unknown[] }> {
  http = createServer();
  io = new Server(http, { path: RELAY_PATH });
  const queries: unknown[] = [];
  const acks: unknown[] = [];
  io.on('connection', (socket: Socket) => {
    queries.push(socket.handshake.query[BRIDGE_BATCH_QUERY]);
    socket.on('bridge-fetch', async (request: { stream: number }, reply: (value: unknown) => void) => {
      for (const { offset, length } of plan) {
        const data = Buffer.alloc(length, offset / PIECE_SIZE);
        const ack = await socket.timeout(5_000).emitWithAck('bridge-piece', { stream: request.stream, offset, data });
        acks.push(ack);
      }
      reply({ ok: true, size });
    });
  });
  await new Promise<void>((resolve) => http!.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${(http!.address() as AddressInfo).port}`, queries, acks };
}

describe('RelayClient: streamed bridge fetches (the page side)', () => {
  it('asks for batches in its handshake and takes events of several whole pieces, each handed on whole', async () => {
    const size = 20 * PIECE_SIZE + 100;
    const plan: Plan = [
      { offset: 0, length: PIECE_SIZE },
      { offset: PIECE_SIZE, length: 15 * PIECE_SIZE },
      { offset: 16 * PIECE_SIZE, length: 4 * PIECE_SIZE + 100 },
    ];
    const bridge = await bridgeServer(plan, size);
    client = new RelayClient(bridge.origin, ['t'.repeat(43)], 'test', noEvents, { bridgeBatches: true });
    const got: Array<[number, number, number]> = [];
    const verdict = await client.bridgeStream(NS, PEER, HASH, (offset, bytes) => {
      got.push([offset, bytes.length, bytes[0]]);
      return true;
    });
    expect(bridge.queries).toEqual(['1']);
    expect(verdict).toBe(size);
    expect(got).toEqual([
      [0, PIECE_SIZE, 0],
      [PIECE_SIZE, 15 * PIECE_SIZE, 1],
      [16 * PIECE_SIZE, 4 * PIECE_SIZE + 100, 16],
    ]);
    expect(bridge.acks).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
  });

  it('takes single pieces (an older relay, or not asked) as batches of one; asks only when told to', async () => {
    const plan: Plan = [0, 1, 2].map((i) => ({ offset: i * PIECE_SIZE, length: i === 2 ? 10 : PIECE_SIZE }));
    const bridge = await bridgeServer(plan, 2 * PIECE_SIZE + 10);
    client = new RelayClient(bridge.origin, ['t'.repeat(43)], 'test', noEvents);
    const offsets: number[] = [];
    expect(await client.bridgeStream(NS, PEER, HASH, (offset) => (offsets.push(offset), true))).toBe(2 * PIECE_SIZE + 10);
    expect(offsets).toEqual([0, PIECE_SIZE, 2 * PIECE_SIZE]);
    expect(bridge.queries).toEqual([undefined]);
  });

  it('stops a stream whose event ended short (the block was over) when more comes, whatever the verdict says', async () => {
    const plan: Plan = [
      { offset: 0, length: 2 * PIECE_SIZE + 5 },
      { offset: 2 * PIECE_SIZE, length: PIECE_SIZE }, // on a boundary, but after the short end
    ];
    const bridge = await bridgeServer(plan, 3 * PIECE_SIZE);
    client = new RelayClient(bridge.origin, ['t'.repeat(43)], 'test', noEvents, { bridgeBatches: true });
    const offsets: number[] = [];
    const fetch = client.bridgeStream(NS, PEER, HASH, (offset) => (offsets.push(offset), true));
    await expect(fetch).rejects.toBeInstanceOf(BridgeFetchError);
    await expect(fetch).rejects.toMatchObject({ code: 'malformed' });
    expect(offsets).toEqual([0]);
    expect(bridge.acks).toEqual([{ ok: true }, { ok: false }]);
  });
});
