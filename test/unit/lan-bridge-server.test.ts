import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_BRIDGE_READ_BYTES, type BlockHash, type BridgeReadOut, type NamespaceId, type PeerId } from '../../src/protocol/index.ts';
import type { LanPeerAdvert } from '../../src/lan/discovery/index.ts';
import { envLanBridge } from '../../src/server/config.ts';
import { BrowserAdverts } from '../../src/server/lan-bridge/browser-adverts.ts';
import { BrowserBlockStore } from '../../src/server/lan-bridge/browser-block-store.ts';
import { BrowserReadError, readBlockFromBrowser } from '../../src/server/lan-bridge/browser-block-reader.ts';
import { LanPeerAdverts } from '../../src/server/lan-bridge/lan-peer-adverts.ts';
import { LanRelayIds } from '../../src/server/lan-bridge/relay-peer-ids.ts';
import { Slots } from '../../src/server/slots.ts';
import type { BridgeSocket } from '../../src/server/relay/bridge-port.ts';

const NS = 'bridgeUnitNamespace1' as NamespaceId;
const OTHER = 'bridgeUnitNamespace2' as NamespaceId;
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex') as BlockHash;

/**
 * A browser as the bridge reaches it: answers bridge-read from `block` the way the page does
 * (BridgeReads), or through `answer` to misbehave. Not the thing under test: the reader is.
 */
function browser(block: Uint8Array | null, answer?: (read: BridgeReadOut) => unknown): BridgeSocket & { reads: BridgeReadOut[]; leave(): void } {
  const gone = new AbortController();
  const reads: BridgeReadOut[] = [];
  return {
    peerId: `p_${randomBytes(12).toString('base64url')}` as PeerId,
    namespaces: [NS],
    gone: gone.signal,
    reads,
    leave: () => gone.abort(),
    async read(read) {
      reads.push(read);
      if (answer) return answer(read);
      if (!block) return { ok: false, code: 'not_found', message: 'not here' };
      return { ok: true, data: Buffer.from(block.subarray(read.offset, read.offset + read.length)), size: block.length };
    },
    batchPieces: false,
    piece: () => Promise.reject(new Error('no streamed fetches here')),
  };
}

const lanAdvert = (peerId: string, ns: NamespaceId, cursor: number, at = 1000): LanPeerAdvert => ({ peerId, address: '10.0.0.2', tcpPort: 4000, ns, cursor, at });

describe('LanRelayIds', () => {
  it('gives a LAN peer a stable relay-format id, different per peer and per process secret', () => {
    const ids = new LanRelayIds();
    const a = ids.relayIdOf('aa'.repeat(16));
    expect(a).toMatch(/^p_[A-Za-z0-9_-]{16}$/);
    expect(ids.relayIdOf('aa'.repeat(16))).toBe(a);
    expect(ids.relayIdOf('bb'.repeat(16))).not.toBe(a);
    expect(new LanRelayIds().relayIdOf('aa'.repeat(16))).not.toBe(a);
  });
});

describe('LanPeerAdverts', () => {
  const peer = 'ab'.repeat(16);

  it('announces a new peer and a moved cursor, not a refresh; lists and forgets per namespace', () => {
    const adverts = new LanPeerAdverts(new LanRelayIds());
    const first = adverts.heard(lanAdvert(peer, NS, 3));
    expect(first).toMatchObject({ label: `LAN peer ${peer.slice(0, 8)}`, ns: NS, cursor: 3, at: 1000, lan: true });
    expect(adverts.heard(lanAdvert(peer, NS, 3, 2000))).toBeNull();
    expect(adverts.heard(lanAdvert(peer, NS, 4, 3000))).toMatchObject({ peerId: first!.peerId, cursor: 4 });
    adverts.heard(lanAdvert(peer, OTHER, 1));
    expect(adverts.advertsOf(NS)).toEqual([expect.objectContaining({ peerId: first!.peerId, cursor: 4, at: 3000 })]);
    expect(adverts.find(first!.peerId, NS)).toMatchObject({ address: '10.0.0.2', tcpPort: 4000 });
    expect(adverts.peerCount).toBe(1);

    expect(adverts.expired(lanAdvert(peer, NS, 4))).toEqual({ peerId: first!.peerId, ns: NS });
    expect(adverts.expired(lanAdvert(peer, NS, 4))).toBeNull();
    expect(adverts.has(first!.peerId)).toBe(true);
    // A ban names the address too: the same id heard from elsewhere is not dropped.
    expect(adverts.dropPeerAt(peer, '10.0.0.9')).toEqual([]);
    expect(adverts.dropPeerAt(peer, '::ffff:10.0.0.2')).toEqual([{ peerId: first!.peerId, ns: OTHER }]);
    expect(adverts.has(first!.peerId)).toBe(false);
    expect(adverts.peerCount).toBe(0);
  });

  it('drops a namespace without touching the others', () => {
    const adverts = new LanPeerAdverts(new LanRelayIds());
    adverts.heard(lanAdvert(peer, NS, 1));
    adverts.heard(lanAdvert(peer, OTHER, 1));
    adverts.heard(lanAdvert('cd'.repeat(16), NS, 2));
    expect(adverts.dropNamespace(NS)).toHaveLength(2);
    expect(adverts.advertsOf(NS)).toEqual([]);
    expect(adverts.advertsOf(OTHER)).toHaveLength(1);
    expect(adverts.peerCount).toBe(1);
  });
});

describe('BrowserAdverts', () => {
  it('orders browsers by cursor, reports changes of the highest, and forgets leavers and stale adverts', () => {
    let now = 0;
    const adverts = new BrowserAdverts<string>(90_000, () => now);
    expect(adverts.highest(NS)).toBeNull();
    expect(adverts.set(NS, 'a', 3)).toBe(true);
    expect(adverts.set(NS, 'b', 5)).toBe(true);
    expect(adverts.set(NS, 'c', 4)).toBe(false);
    expect(adverts.set(NS, 'a', 3)).toBe(false);
    expect(adverts.browsersOf(NS)).toEqual(['b', 'c', 'a']);
    expect(adverts.highest(NS)).toBe(5);
    expect(adverts.remove('b')).toEqual([NS]);
    expect(adverts.remove('a')).toEqual([]);
    expect(adverts.highest(NS)).toBe(4);
    now = 100_000;
    expect(adverts.browsersOf(NS)).toEqual([]);
    expect(adverts.highest(NS)).toBeNull();
  });
});

describe('Slots', () => {
  it('lets `size` holders in and passes a released slot to the next waiter', async () => {
    const slots = new Slots(2);
    const first = await slots.acquire();
    const second = await slots.acquire();
    let third: (() => void) | null = null;
    const waiting = slots.acquire().then((release) => (third = release));
    await Promise.resolve();
    expect(third).toBeNull();
    first();
    first(); // a second release is ignored
    await waiting;
    expect(slots.inUse).toBe(2);
    second();
    third!();
    expect(slots.inUse).toBe(0);
  });
});

describe('readBlockFromBrowser', () => {
  const options = { timeoutMs: 1000, parallel: 3 };

  it('assembles a block from 64 KiB pieces and checks its hash', async () => {
    const block = new Uint8Array(randomBytes(5 * MAX_BRIDGE_READ_BYTES + 17));
    const from = browser(block);
    const bytes = await readBlockFromBrowser(from, NS, sha256(block), options);
    expect(Buffer.from(bytes).equals(block)).toBe(true);
    expect(from.reads.map((r) => r.offset).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5].map((i) => i * MAX_BRIDGE_READ_BYTES));
    expect(from.reads.every((r) => r.length === MAX_BRIDGE_READ_BYTES && r.ns === NS)).toBe(true);
  });

  it('does not believe wrong bytes, a refusal, a malformed answer, a changing size or a browser that left', async () => {
    const block = new Uint8Array(randomBytes(2 * MAX_BRIDGE_READ_BYTES));
    const hash = sha256(block);
    const reason = (from: BridgeSocket) => readBlockFromBrowser(from, NS, hash, options).then(() => 'read', (e: BrowserReadError) => e.reason);
    const liar = browser(null, (read) => ({ ok: true, data: randomBytes(read.length), size: block.length }));
    expect(await reason(liar)).toBe('bad_block');
    expect(await reason(browser(null))).toBe('refused');
    expect(await reason(browser(null, () => ({ ok: true, data: 'text', size: 10 })))).toBe('malformed');
    expect(await reason(browser(null, (read) => ({ ok: true, data: Buffer.alloc(read.length), size: read.offset === 0 ? block.length : block.length + 1 })))).toBe('malformed');
    expect(await reason(browser(null, () => Promise.reject(new Error('operation has timed out'))))).toBe('timeout');
    const leaving = browser(null, () => new Promise(() => undefined));
    const pending = reason(leaving);
    leaving.leave();
    expect(await pending).toBe('gone');
  });
});

describe('BrowserBlockStore', () => {
  it('pulls from the best browser that answers truly, within the namespace, and hands the bytes to getBlock once', async () => {
    const block = new Uint8Array(randomBytes(3000));
    const hash = sha256(block);
    const liar = browser(null, (read) => ({ ok: true, data: randomBytes(Math.min(read.length, 3000 - read.offset)), size: 3000 }));
    const honest = browser(block);
    const failures: string[] = [];
    const slots = new Slots(1);
    const store = new BrowserBlockStore({
      browsersOf: (ns) => (ns === NS ? [liar, honest] : []),
      referencesBlock: async (ns, h) => ns === NS && h === hash,
      slots,
      maxBrowsers: 3,
      timeoutMs: 1000,
      parallel: 2,
      onBrowserFailed: (error) => failures.push(error.reason),
    });
    expect(await store.isLiveBlock(OTHER, hash)).toBe(false);
    expect(await store.isLiveBlock(NS, sha256(new Uint8Array(1)))).toBe(false);
    expect(liar.reads).toEqual([]);

    expect(await store.isLiveBlock(NS, hash)).toBe(true);
    expect(failures).toEqual(['bad_block']);
    expect(slots.inUse).toBe(1);
    expect(Buffer.from((await store.getBlock(hash))!).equals(block)).toBe(true);
    expect(slots.inUse).toBe(0);
    expect(await store.getBlock(hash)).toBeNull();
  });

  it('asks at most maxBrowsers and says not found when none gives the block', async () => {
    const block = new Uint8Array(randomBytes(100));
    const empty = [browser(null), browser(null), browser(null), browser(block)];
    const store = new BrowserBlockStore({
      browsersOf: () => empty,
      referencesBlock: async () => true,
      slots: new Slots(1),
      maxBrowsers: 3,
      timeoutMs: 1000,
      parallel: 1,
    });
    expect(await store.isLiveBlock(NS, sha256(block))).toBe(false);
    expect(empty[3].reads).toEqual([]);
  });
});

describe('envLanBridge', () => {
  it('is off unless LAN_BRIDGE=1 or --lan, and then reads and checks its settings', () => {
    expect(envLanBridge({}, [])).toBeNull();
    expect(envLanBridge({ LAN_BRIDGE: '0', LAN_PORT: 'nonsense' }, [])).toBeNull();
    expect(envLanBridge({ LAN_BRIDGE: '1', LAN_BROADCAST: '10.1.2.255' }, [])).toEqual({
      udpPort: 17600,
      tcpPort: 0,
      bindAddress: '0.0.0.0',
      broadcastAddresses: ['10.1.2.255'],
    });
    expect(
      envLanBridge({ LAN_PORT: '17700', LAN_TCP_PORT: '17701', LAN_BIND: '192.168.1.10', LAN_BROADCAST: '192.168.1.255, 10.0.0.255,192.168.1.255' }, ['--lan']),
    ).toEqual({ udpPort: 17700, tcpPort: 17701, bindAddress: '192.168.1.10', broadcastAddresses: ['192.168.1.255', '10.0.0.255'] });
  });

  it('refuses bad values with a message naming the setting', () => {
    expect(() => envLanBridge({ LAN_BRIDGE: 'yes' })).toThrow(/LAN_BRIDGE/);
    expect(() => envLanBridge({ LAN_BRIDGE: '1', LAN_PORT: '0' })).toThrow(/LAN_PORT/);
    expect(() => envLanBridge({ LAN_BRIDGE: '1', LAN_PORT: '70000' })).toThrow(/LAN_PORT/);
    expect(() => envLanBridge({ LAN_BRIDGE: '1', LAN_TCP_PORT: '-1' })).toThrow(/LAN_TCP_PORT/);
    expect(() => envLanBridge({ LAN_BRIDGE: '1', LAN_BIND: 'eth0' })).toThrow(/LAN_BIND/);
    expect(() => envLanBridge({ LAN_BRIDGE: '1', LAN_BROADCAST: '192.168.1.255,nope' })).toThrow(/LAN_BROADCAST.*nope/);
  });
});
