import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { LanAdvertiser } from '../../src/lan/discovery/index.ts';
import { LanPeering, type LanPeeringHost } from '../../src/lan/lan-peering.ts';
import { connectLanPeer } from '../../src/lan/tcp/connect.ts';
import type { LanPeer, SessionFailure } from '../../src/lan/tcp/lan-session.ts';
import type { BlockHash, NamespaceId } from '../../src/protocol/index.ts';
import { lanTestUdpPort } from '../support/lan-daemon.ts';
import { MemoryBlockStore, hashOf } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';

/**
 * What a daemon's LAN peering does when a peer's adverts stop (the advert ttl runs out): the
 * real LanPeering on loopback, its adverts heard on 127.0.0.1 only, the peers around it built
 * from the real advertiser and TCP client. The daemon's engine is a small stand-in (the host):
 * what is under test is the peering, not the sync.
 */

const NS = 'expiryexpiryexpiryexpi' as NamespaceId;
const lanKey = randomBytes(32);
const TTL_MS = 600;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function hostWith(blocks: MemoryBlockStore, live: Set<BlockHash>, cursor: number): LanPeeringHost {
  return {
    ns: NS,
    blocks,
    syncedCursor: cursor,
    holdsLiveBlock: (hash) => live.has(hash),
    onSynced: () => () => undefined,
    onPenalised: () => () => undefined,
    onCommitted: () => () => undefined,
    addSource: () => undefined,
    removeSource: () => undefined,
    sourcesChanged: () => undefined,
  };
}

async function advertiser(port: number, peerId: Uint8Array, cursor: number): Promise<LanAdvertiser> {
  const sender = new LanAdvertiser({ tcpPort: 9, broadcastAddress: '127.0.0.1', port, peerId, intervalMs: 100 });
  sender.setNamespace(NS, lanKey, cursor);
  await sender.start();
  cleanups.push(() => sender.close());
  return sender;
}

const hex = (id: Uint8Array) => Buffer.from(id).toString('hex');

describe('a LAN peer whose adverts stop', () => {
  it('is no longer dialled and is forgotten, but a link it has open stays up and serves; it is forgotten when that link closes', async () => {
    const blocks = new MemoryBlockStore();
    const bytes = randomBytes(300_000);
    const hash = hashOf(bytes);
    await blocks.putBlock(hash, bytes);
    const udpPort = lanTestUdpPort();
    const log: string[] = [];
    const peering = new LanPeering({
      host: hostWith(blocks, new Set([hash]), 5),
      lanKey,
      udpPort,
      udpBindAddress: '127.0.0.1',
      tcpPort: 0,
      tcpHost: '127.0.0.1',
      broadcastAddresses: [],
      advertTtlMs: TTL_MS,
      idleTimeoutMs: 0,
      log: (line) => log.push(line),
    });
    await peering.start();
    cleanups.push(() => peering.close());
    const listed = (id: Uint8Array) => peering.status().peers.find((peer) => peer.peerId === hex(id));

    // Two peers behind us advertise; one of them dials in (as a daemon behind, or a LAN bridge, does).
    const linkedId = randomBytes(16);
    const quietId = randomBytes(16);
    const linkedAdverts = await advertiser(udpPort, linkedId, 0);
    const quietAdverts = await advertiser(udpPort, quietId, 0);
    await until(() => listed(linkedId)?.address != null && listed(quietId)?.address != null, 5_000, 'both adverts heard');
    let closedWith: SessionFailure | null | undefined;
    const linked: LanPeer = await connectLanPeer({
      host: '127.0.0.1',
      port: peering.tcpPort,
      ns: NS,
      lanKey,
      peerId: linkedId,
      cursor: 0,
      onClose: (failure) => (closedWith = failure),
    });
    cleanups.push(() => linked.close());
    await until(() => listed(linkedId)?.links === 1, 5_000, 'the link accepted');

    // Both go quiet for longer than the ttl.
    await Promise.all([linkedAdverts.close(), quietAdverts.close()]);
    await until(() => listed(quietId) === undefined, 5_000, 'the quiet peer forgotten');
    await until(() => listed(linkedId)?.address === null, 5_000, "the linked peer's advert expired");
    expect(log.some((line) => line.includes('its open link stays'))).toBe(true);

    // The link is still up and serves, well past the expiry.
    await new Promise((resolve) => setTimeout(resolve, TTL_MS));
    expect(closedWith).toBeUndefined();
    expect(listed(linkedId)).toMatchObject({ links: 1, cursor: null });
    expect(Buffer.from(await linked.link.request(NS, hash)).equals(bytes)).toBe(true);

    // Closed from its side: nothing is left of it (no advert to dial it again by).
    linked.close();
    await until(() => listed(linkedId) === undefined, 5_000, 'the peer forgotten with its last link');
    expect(peering.status().peers).toEqual([]);
  });
});
