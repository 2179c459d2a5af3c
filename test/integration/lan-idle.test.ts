import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { connectLanPeer } from '../../src/lan/tcp/connect.ts';
import { LanBlockServer } from '../../src/lan/tcp/lan-block-server.ts';
import type { LanPeer, SessionFailure } from '../../src/lan/tcp/lan-session.ts';
import type { BlockHash, NamespaceId } from '../../src/protocol/index.ts';
import { MemoryBlockStore, hashOf } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';

/**
 * Idle LAN sessions over real TLS on loopback: a session with nothing received and nothing
 * in flight for idleTimeoutMs is closed plainly (not as a protocol failure, so the peer is
 * not banned and may dial again); one with a request in flight is kept however long the
 * answer takes.
 */

const NS = 'idleidleidleidleidle01' as NamespaceId;
const lanKey = randomBytes(32);

/** A block store whose reads wait until `release()`: a request stays in flight as long as the test wants. */
class GatedStore extends MemoryBlockStore {
  private opened!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.opened = resolve));
  reads = 0;
  release(): void {
    this.opened();
  }
  override async getBlock(hash: BlockHash): Promise<Uint8Array | null> {
    this.reads += 1;
    await this.gate;
    return super.getBlock(hash);
  }
}

const servers: LanBlockServer[] = [];
const peers: LanPeer[] = [];

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.close();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function startServer(store: MemoryBlockStore, idleTimeoutMs: number, closes: SessionFailure[] = []): Promise<{ server: LanBlockServer; port: number }> {
  const server = new LanBlockServer({
    host: '127.0.0.1',
    port: 0,
    peerId: randomBytes(16),
    store,
    isLiveBlock: async (ns, hash) => ns === NS && store.blocks.has(hash),
    cursorOf: () => 5,
    idleTimeoutMs,
    onPeerClosed: (_peer, failure) => closes.push(failure ?? ('plain' as SessionFailure)),
  });
  server.setNamespace(NS, lanKey);
  servers.push(server);
  const { port } = await server.listen();
  return { server, port };
}

function dial(port: number, closes: (SessionFailure | null)[], idleTimeoutMs?: number): Promise<LanPeer> {
  return connectLanPeer({ host: '127.0.0.1', port, ns: NS, lanKey, peerId: randomBytes(16), cursor: 0, idleTimeoutMs, onClose: (failure) => closes.push(failure) }).then(
    (peer) => {
      peers.push(peer);
      return peer;
    },
  );
}

describe('LAN sessions that go idle', () => {
  it('the server closes a silent session plainly and counts it; a session waiting for an answer stays open', async () => {
    const store = new GatedStore();
    const bytes = randomBytes(300_000);
    const hash = hashOf(bytes);
    await store.putBlock(hash, bytes);
    const serverCloses: SessionFailure[] = [];
    const { server, port } = await startServer(store, 300, serverCloses);

    const silentCloses: (SessionFailure | null)[] = [];
    const busyCloses: (SessionFailure | null)[] = [];
    const silent = await dial(port, silentCloses);
    const busy = await dial(port, busyCloses);
    const answer = busy.link.request(NS, hash);
    await until(() => store.reads > 0, 5_000, 'the request being served');

    await until(() => silent.link.isClosed, 10_000, 'the silent session closed');
    expect(silentCloses).toEqual([null]); // a plain close: nothing to ban
    expect(server.stats.idleClosed).toBe(1);
    expect(serverCloses).toEqual(['plain']);
    // The busy one outlived the silent one although it sent nothing since its request.
    expect(busy.link.isOpen).toBe(true);

    store.release();
    expect(hashOf(await answer)).toBe(hash);
    // Once answered, it has nothing in flight: it goes idle too.
    await until(() => busy.link.isClosed, 10_000, 'the busy session closed once idle');
    expect(busyCloses).toEqual([null]);
    expect(server.stats.idleClosed).toBe(2);
    expect(Object.values(server.stats.refused).every((count) => count === 0)).toBe(true);
  });

  it('the dialling side closes its idle session too when asked to; the server sees a plain close', async () => {
    const store = new MemoryBlockStore();
    const serverCloses: SessionFailure[] = [];
    const { server } = await startServer(store, 0, serverCloses).then(async (started) => {
      const closes: (SessionFailure | null)[] = [];
      const peer = await dial(started.port, closes, 300);
      await until(() => peer.link.isClosed, 10_000, 'the dialled session closed');
      expect(closes).toEqual([null]);
      return started;
    });
    await until(() => serverCloses.length === 1, 5_000, 'the server seeing the close');
    expect(serverCloses).toEqual(['plain']);
    expect(server.stats.idleClosed).toBe(0);
  });
});
