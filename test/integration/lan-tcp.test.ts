import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerNackError } from '../../src/engine/peer-link.ts';
import { BlockScheduler } from '../../src/engine/scheduler.ts';
import { connectLanPeer, LanConnectError, type ConnectLanPeerOptions } from '../../src/lan/tcp/connect.ts';
import { LanBlockServer, type LanRefusal } from '../../src/lan/tcp/lan-block-server.ts';
import { isProtocolFailure, type LanPeer, type SessionFailure } from '../../src/lan/tcp/lan-session.ts';
import { makePskIdentity, namespaceSecrets } from '../../src/lan/tcp/psk.ts';
import { lanServerSecureOptions, lanTlsOptions } from '../../src/lan/tcp/tls-profile.ts';
import { MAX_BLOCK_SIZE, decodeFrame, encodeFrame, type BlockHash, type NamespaceId } from '../../src/protocol/index.ts';
import { decodeHello, encodeHello, encodeStreamMessage, StreamDecoder } from '../../src/protocol/lan-stream.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';

/**
 * The LAN block service over real TLS sockets on loopback (127.0.0.x). The serving side's
 * blocks live in an in-memory LocalBlockStore; everything else is the real code.
 */

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const OTHER = 'otherotherotherother12' as NamespaceId;
const STRANGER = 'strangerstrangerstrang' as NamespaceId;
const BLOCKS = 12;
const SERVER_CURSOR = 40;
const OTHER_CURSOR = 7;

const nsKey = randomBytes(32);
const otherKey = randomBytes(32);
const serverPeerId = randomBytes(16);
const store = new MemoryBlockStore();
const live = new Map<NamespaceId, Set<BlockHash>>([
  [NS, new Set()],
  [OTHER, new Set()],
]);
const nsHashes: BlockHash[] = [];
let otherHash: BlockHash;
let storedNotLive: BlockHash;

let server: LanBlockServer;
let port: number;
const serverPeers: LanPeer[] = [];
/** Peers whose cursor rose by a later hello, as the server reported them. */
const serverCursorRises: LanPeer[] = [];
const clients: LanPeer[] = [];
const rawSockets: net.Socket[] = [];

async function addBlock(ns: NamespaceId | null, bytes: Uint8Array): Promise<BlockHash> {
  const hash = hashOf(bytes);
  await store.putBlock(hash, bytes);
  if (ns) live.get(ns)!.add(hash);
  return hash;
}

function honest(overrides: Partial<ConnectLanPeerOptions> = {}): Promise<LanPeer> {
  return connectLanPeer({ host: '127.0.0.1', port, ns: NS, lanKey: nsKey, peerId: randomBytes(16), cursor: 3, ...overrides }).then((peer) => {
    clients.push(peer);
    return peer;
  });
}

/** Completes TLS with whatever PSK and identity it is given; rejects when the handshake fails. */
function rawTls(psk: Uint8Array, identity: string, localAddress = '127.0.0.1'): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    // From a chosen loopback address (127.0.0.0/8), to exercise the per-address limit.
    const tcp = net.connect({ host: '127.0.0.1', port, localAddress });
    tcp.on('error', () => {});
    const socket = tls.connect({
      ...lanTlsOptions,
      socket: tcp,
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ psk, identity }),
    });
    rawSockets.push(socket);
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the handshake completed')));
  });
}

/** A member's TLS connection for `ns`, no hello sent yet. */
function memberTls(ns: NamespaceId, lanKey: Uint8Array, localAddress?: string): Promise<tls.TLSSocket> {
  const secrets = namespaceSecrets(ns, lanKey);
  return rawTls(secrets.psk, makePskIdentity(secrets.identityKey), localAddress);
}

/** Resolves once the server dropped `socket` (reading on, so that the end of the stream is seen). */
function closed(socket: net.Socket): Promise<void> {
  socket.resume();
  return new Promise((resolve) => (socket.closed ? resolve() : socket.once('close', () => resolve())));
}

function refusals(reason: LanRefusal): number {
  return server.stats.refused[reason];
}

async function expectRefused(reason: LanRefusal, before: number): Promise<void> {
  await until(() => refusals(reason) === before + 1, 5000, `refusal ${reason}`);
}

/** The concurrent honest client: fetches NS blocks in a loop and checks each hash. */
const background = { fetched: 0, failures: [] as unknown[], stop: false, done: Promise.resolve() };

async function servedMore(than: number): Promise<void> {
  await until(() => background.fetched > than + 1, 15_000, 'the honest client being served');
}

beforeAll(async () => {
  for (let i = 0; i < BLOCKS; i++) nsHashes.push(await addBlock(NS, randomBytes(MAX_BLOCK_SIZE - (i === BLOCKS - 1 ? 12_345 : 0))));
  otherHash = await addBlock(OTHER, randomBytes(100_000));
  storedNotLive = await addBlock(null, randomBytes(50_000));
  server = new LanBlockServer({
    host: '127.0.0.1',
    port: 0,
    peerId: serverPeerId,
    store,
    isLiveBlock: async (ns, hash) => live.get(ns)?.has(hash) ?? false,
    cursorOf: (ns) => (ns === NS ? SERVER_CURSOR : OTHER_CURSOR),
    onPeer: (peer) => serverPeers.push(peer),
    onPeerCursor: (peer) => serverCursorRises.push(peer),
    maxConnections: 6,
    maxConnectionsPerAddress: 3,
    handshakeTimeoutMs: 1500,
    helloTimeoutMs: 1500,
  });
  server.setNamespace(NS, nsKey);
  server.setNamespace(OTHER, otherKey);
  ({ port } = await server.listen());

  const peer = await honest();
  background.done = (async () => {
    let i = 0;
    while (!background.stop) {
      const hash = nsHashes[i++ % BLOCKS];
      try {
        const bytes = await peer.link.request(NS, hash);
        if (hashOf(bytes) !== hash) throw new Error('bytes do not match the hash');
        background.fetched += 1;
      } catch (error) {
        background.failures.push(error);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  await servedMore(0);
}, 60_000);

afterAll(async () => {
  background.stop = true;
  await background.done;
  for (const peer of clients) peer.close();
  for (const socket of rawSockets) socket.destroy();
  await server?.close();
});

describe('LAN block service over TLS-PSK', () => {
  it('serves an honest member every block, hash-checked, after exchanging hellos', async () => {
    const before = server.stats.sessions;
    const rises: number[] = [];
    const peer = await honest({ cursor: 5, onCursor: (cursor) => rises.push(cursor) });
    expect(peer.remoteCursor).toBe(SERVER_CURSOR);
    expect(peer.remotePeerId).toBe(serverPeerId.toString('hex'));
    await until(() => server.stats.sessions === before + 1, 5000, 'the server session');
    const onServer = serverPeers.find((candidate) => candidate.remoteCursor === 5)!;
    expect(onServer.ns).toBe(NS);

    // The remote's cursor follows its later hellos, and either side reports the rise (the
    // daemon looks at its sources again rather than waiting out a fresh-entry hold).
    peer.sendCursor(9);
    await until(() => onServer.remoteCursor === 9, 5000, 'the cursor update');
    expect(serverCursorRises).toContain(onServer);
    onServer.sendCursor(SERVER_CURSOR + 1);
    await until(() => rises.includes(SERVER_CURSOR + 1), 5000, 'the rise reported to the dialling side');
    expect(peer.source.advert(NS)).toBe(SERVER_CURSOR + 1);

    // The scheduler fetches through the peer as a block source and hashes every block.
    const fetched = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store: fetched, sha256: nodeSha256, sources: () => [peer.source], maxInFlight: 6, events: {} });
    scheduler.setWanted(nsHashes.map((hash, i) => ({ ns: NS, hash, sjid: 1 + i, sizeHint: MAX_BLOCK_SIZE })));
    await scheduler.whenIdle();
    await scheduler.stop();
    expect(fetched.blocks.size).toBe(BLOCKS);
    for (const hash of nsHashes) expect(Buffer.from(fetched.blocks.get(hash)!).equals(Buffer.from(store.blocks.get(hash)!))).toBe(true);
    expect(peer.source.blocksReceived).toBe(BLOCKS);
    peer.close();
  }, 60_000);

  it('refuses a NACK for blocks of another namespace, of no live file, or unknown; serves none', async () => {
    const peer = await honest();
    const reasonOf = (ns: NamespaceId, hash: BlockHash) =>
      peer.link.request(ns, hash).then(
        () => 'served',
        (error: unknown) => (error instanceof PeerNackError ? error.reason : String(error)),
      );
    // OTHER's block asked on a connection that proved NS, under either namespace.
    expect(await reasonOf(OTHER, otherHash)).toBe('forbidden');
    expect(await reasonOf(NS, otherHash)).toBe('not_found');
    expect(await reasonOf(NS, storedNotLive)).toBe('not_found');
    expect(await reasonOf(NS, hashOf(randomBytes(10)))).toBe('not_found');
    expect(peer.link.isOpen).toBe(true);
    expect(peer.link.bytesReceived).toBe(0);
    peer.close();
  });

  it('fails the handshake of a client without the key, a stranger workspace or a forged identity, and counts each', async () => {
    const served = background.fetched;

    // Plain TLS expecting a certificate, no PSK at all.
    let before = refusals('handshake_failed');
    await expect(
      new Promise((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => resolve(socket));
        rawSockets.push(socket);
        socket.once('error', reject);
      }),
    ).rejects.toThrow();
    await expectRefused('handshake_failed', before);

    // Bytes that are not TLS at all.
    before = refusals('handshake_failed');
    const garbage = net.connect({ host: '127.0.0.1', port });
    rawSockets.push(garbage);
    garbage.on('error', () => {});
    garbage.write(randomBytes(300));
    await closed(garbage);
    await expectRefused('handshake_failed', before);

    // The key of a workspace this server does not serve.
    before = refusals('unknown_identity');
    await expect(honest({ ns: STRANGER, lanKey: randomBytes(32) })).rejects.toBeInstanceOf(LanConnectError);
    await expectRefused('unknown_identity', before);

    // A made-up identity.
    before = refusals('unknown_identity');
    await expect(rawTls(randomBytes(32), randomBytes(32).toString('hex'))).rejects.toThrow();
    await expectRefused('unknown_identity', before);

    // A replayed genuine identity without the PSK behind it: the PSK binder does not verify.
    before = refusals('handshake_failed');
    const secrets = namespaceSecrets(NS, nsKey);
    await expect(rawTls(randomBytes(32), makePskIdentity(secrets.identityKey))).rejects.toThrow();
    await expectRefused('handshake_failed', before);

    await servedMore(served);
  });

  it("takes another namespace's key as proof of that namespace only: a hello naming NS is refused", async () => {
    const served = background.fetched;
    const before = refusals('bad_hello');
    const attempt = honest({ lanKey: otherKey });
    await expect(attempt).rejects.toMatchObject({ stage: 'hello' });
    await expectRefused('bad_hello', before);
    await servedMore(served);
  });

  it('disconnects and counts a bad first message, an oversized frame, garbage frames, and silence', async () => {
    const served = background.fetched;
    const hello = encodeHello({ peerId: randomBytes(16), cursors: [{ ns: NS, cursor: 1 }] });

    // First message is a block frame, not a hello.
    let before = refusals('bad_hello');
    let socket = await memberTls(NS, nsKey);
    socket.write(encodeStreamMessage(encodeFrame({ type: 'cancel', id: 1 })));
    await closed(socket);
    await expectRefused('bad_hello', before);

    // A declared length past the limit, after a good hello: dropped before any of it is kept.
    before = refusals('oversize');
    socket = await memberTls(NS, nsKey);
    socket.write(encodeStreamMessage(hello));
    socket.write(Buffer.from([0x7f, 0xff, 0xff, 0xff]));
    await closed(socket);
    await expectRefused('oversize', before);

    // A well-framed message that is no block frame.
    before = refusals('bad_frame');
    socket = await memberTls(NS, nsKey);
    socket.write(encodeStreamMessage(hello));
    socket.write(encodeStreamMessage(new Uint8Array([1, 99, 0, 0, 0, 0])));
    await closed(socket);
    await expectRefused('bad_frame', before);

    // DATA for a request never made.
    before = refusals('bad_frame');
    socket = await memberTls(NS, nsKey);
    socket.write(encodeStreamMessage(hello));
    socket.write(encodeStreamMessage(encodeFrame({ type: 'data', id: 77, offset: 0, bytes: new Uint8Array(10) })));
    await closed(socket);
    await expectRefused('bad_frame', before);

    // A later hello that changes the peer id.
    before = refusals('bad_hello');
    socket = await memberTls(NS, nsKey);
    socket.write(encodeStreamMessage(hello));
    socket.write(encodeStreamMessage(encodeHello({ peerId: randomBytes(16), cursors: [{ ns: NS, cursor: 2 }] })));
    await closed(socket);
    await expectRefused('bad_hello', before);

    // TCP open, no TLS; TLS up, no hello.
    before = refusals('handshake_timeout');
    const silent = net.connect({ host: '127.0.0.1', port });
    rawSockets.push(silent);
    silent.on('error', () => {});
    await closed(silent);
    await expectRefused('handshake_timeout', before);
    before = refusals('hello_timeout');
    socket = await memberTls(NS, nsKey);
    await closed(socket);
    await expectRefused('hello_timeout', before);

    await servedMore(served);
  }, 30_000);

  it('sends its own hello first: peer id and cursor of the proven namespace only', async () => {
    const socket = await memberTls(OTHER, otherKey);
    const decoder = new StreamDecoder();
    const first = await new Promise<Uint8Array>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        const messages = decoder.push(chunk);
        if (messages.length > 0) resolve(messages[0].slice());
      });
    });
    const hello = decodeHello(first);
    expect(Buffer.from(hello.peerId).equals(serverPeerId)).toBe(true);
    expect(hello.cursors).toEqual([{ ns: OTHER, cursor: OTHER_CURSOR }]);
    socket.destroy();
  });

  it('bounds connections per address and in total, and accepts again once one closes', async () => {
    const served = background.fetched;
    // Earlier tests' clients (all but the background one, which is first) leave first.
    for (const peer of clients.splice(1)) peer.close();
    await until(() => server.stats.open === 1, 5000, 'only the background connection open');
    const held: tls.TLSSocket[] = [];
    // 127.0.0.1 holds the background client: two more reach its limit of 3.
    held.push(await memberTls(NS, nsKey), await memberTls(NS, nsKey));
    let before = refusals('address_limit');
    await expect(memberTls(NS, nsKey)).rejects.toThrow();
    await expectRefused('address_limit', before);

    held.push(...(await Promise.all([1, 2, 3].map(() => memberTls(NS, nsKey, '127.0.0.2')))));
    expect(server.stats.open).toBe(6);
    before = refusals('connection_limit');
    await expect(memberTls(NS, nsKey, '127.0.0.3')).rejects.toThrow();
    await expectRefused('connection_limit', before);

    held.pop()!.destroy();
    await until(() => server.stats.open === 5, 5000, 'a slot freed');
    held.push(await memberTls(NS, nsKey, '127.0.0.3'));
    for (const socket of held) socket.destroy();
    await until(() => server.stats.open === 1, 5000, 'the held connections gone');
    await servedMore(served);
  }, 30_000);

  it('stops reading a client that floods requests and never reads the answers', async () => {
    const served = background.fetched;
    const peerId = randomBytes(16);
    const socket = await memberTls(NS, nsKey);
    socket.write(encodeStreamMessage(encodeHello({ peerId, cursors: [{ ns: NS, cursor: 1 }] })));
    await until(() => serverPeers.some((peer) => peer.remotePeerId === peerId.toString('hex')), 5000, 'the flooder session');
    const onServer = serverPeers.find((peer) => peer.remotePeerId === peerId.toString('hex'))!;

    // 600,000 requests (39 MB): answered, each would queue a 4 MiB block or an 11-byte NACK.
    const one = encodeStreamMessage(encodeFrame({ type: 'request', id: 1, ns: NS, hash: nsHashes[0] }));
    const count = 600_000;
    const flood = Buffer.alloc(one.length * count);
    for (let i = 0; i < count; i++) {
      flood.set(one, i * one.length);
      flood.writeUInt32BE(i + 1, i * one.length + 4 + 2);
    }
    socket.write(flood);
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, onServer.bufferedBytes)), 2);
    try {
      await until(() => onServer.bufferedBytes > 4 * 1024 * 1024, 15_000, 'the server buffering its answers');
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(onServer.link.isOpen).toBe(true);
    } finally {
      clearInterval(sampler);
    }
    // Reading stops once 8 MiB of answers wait (the socket channel's read pause, above a LAN
    // link's 4 MiB serving high-water mark): at most one more read's worth of NACKs follows.
    expect(peak).toBeLessThan(8 * 1024 * 1024 + 256 * 1024);
    expect(socket.writableLength).toBeGreaterThan(0); // the flood backs up on the client's side
    socket.destroy();
    await until(() => !onServer.link.isOpen, 5000, 'the flooder gone');
    await servedMore(served);
  }, 60_000);

  describe('a member that stops reading its answers', () => {
    // Long enough that a test process starved by a loaded machine for a second or two is not
    // taken for a reader that stopped (the slow reader below was, at 1.5 s).
    const STALL_MS = 4000;
    let stallServer: LanBlockServer;
    let stallPort: number;

    beforeAll(async () => {
      stallServer = new LanBlockServer({
        host: '127.0.0.1',
        port: 0,
        peerId: randomBytes(16),
        store,
        isLiveBlock: async (ns, hash) => live.get(ns)?.has(hash) ?? false,
        cursorOf: () => SERVER_CURSOR,
        channel: { stallTimeoutMs: STALL_MS },
      });
      stallServer.setNamespace(NS, nsKey);
      ({ port: stallPort } = await stallServer.listen());
    });
    afterAll(() => stallServer?.close());

    /** A member's session on stallServer that has asked for `count` 4 MiB blocks. */
    async function asking(count: number): Promise<tls.TLSSocket> {
      const secrets = namespaceSecrets(NS, nsKey);
      const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({
          ...lanTlsOptions,
          host: '127.0.0.1',
          port: stallPort,
          checkServerIdentity: () => undefined,
          pskCallback: () => ({ psk: secrets.psk, identity: makePskIdentity(secrets.identityKey) }),
        });
        rawSockets.push(s);
        s.once('secureConnect', () => resolve(s));
        s.once('error', reject);
      });
      socket.write(encodeStreamMessage(encodeHello({ peerId: randomBytes(16), cursors: [{ ns: NS, cursor: 1 }] })));
      for (let i = 0; i < count; i++) {
        socket.write(encodeStreamMessage(encodeFrame({ type: 'request', id: i + 1, ns: NS, hash: nsHashes[i] })));
      }
      return socket;
    }

    it('closes the connection once its unsent answers make no progress, and counts it stalled', async () => {
      const before = stallServer.stats.refused.stalled;
      const socket = await asking(4); // 16 MiB of answers, far more than the socket buffers take
      socket.pause();
      await until(() => stallServer.stats.refused.stalled === before + 1, 5 * STALL_MS + 10_000, 'the stalled session closed');
      await until(() => stallServer.stats.open === 0, 5000, 'the connection gone');
      // A congested link looks the same as a hostile reader: a plain refusal, not a protocol failure.
      expect(isProtocolFailure('stalled')).toBe(false);
    }, 60_000);

    it('keeps serving a slow reader whose answers keep moving, to the last byte', async () => {
      const before = stallServer.stats.refused.stalled;
      const socket = await asking(2);
      const decoder = new StreamDecoder();
      const received = new Map<number, number>();
      const ended = new Set<number>();
      await new Promise<void>((resolve, reject) => {
        socket.on('error', reject);
        socket.on('close', () => reject(new Error('the server closed a slow but steady reader')));
        socket.on('data', (chunk: Buffer) => {
          // About 2 MB/s: well under the socket buffers' pace, and the 8 MiB take about twice
          // the stall timeout, while every pause is far shorter than it.
          socket.pause();
          setTimeout(() => socket.resume(), Math.ceil(chunk.length / 2_000));
          for (const message of decoder.push(chunk)) {
            if (message[0] === 0x80) continue; // the server's hello
            const frame = decodeFrame(message);
            if (frame.type === 'data') received.set(frame.id, (received.get(frame.id) ?? 0) + frame.bytes.length);
            if (frame.type === 'end') ended.add(frame.id);
            if (frame.type === 'nack') reject(new Error(`request ${frame.id} refused: ${frame.reason}`));
          }
          if (ended.size === 2) resolve();
        });
      });
      expect([...received.values()]).toEqual([MAX_BLOCK_SIZE, MAX_BLOCK_SIZE]);
      expect(stallServer.stats.refused.stalled).toBe(before);
      socket.destroy();
    }, 60_000);
  });

  it('closes the connections made with a replaced key or of a namespace it stops serving', async () => {
    const served = background.fetched;
    const newKey = randomBytes(32);
    const old = await honest({ ns: OTHER, lanKey: otherKey });
    server.setNamespace(OTHER, newKey);
    await until(() => old.link.isClosed, 5000, 'the connection on the old key closed');
    let before = refusals('unknown_identity');
    await expect(honest({ ns: OTHER, lanKey: otherKey })).rejects.toBeInstanceOf(LanConnectError);
    await expectRefused('unknown_identity', before);

    const current = await honest({ ns: OTHER, lanKey: newKey });
    server.removeNamespace(OTHER);
    await until(() => current.link.isClosed, 5000, 'the OTHER connection closed');
    before = refusals('unknown_identity');
    await expect(honest({ ns: OTHER, lanKey: newKey })).rejects.toBeInstanceOf(LanConnectError);
    await expectRefused('unknown_identity', before);

    server.setNamespace(OTHER, otherKey);
    await servedMore(served);
  });

  it('tells the dialling side whether its link closed for a protocol error or plainly', async () => {
    // A member's server that says hello, then does what `after` says.
    const secrets = namespaceSecrets(NS, nsKey);
    const rogueId = randomBytes(16);
    const dialClosing = async (after: (socket: tls.TLSSocket) => void): Promise<SessionFailure | null> => {
      const rogue = tls.createServer({
        ...lanTlsOptions,
        secureOptions: lanServerSecureOptions,
        pskCallback: (_socket, identity) => (identity.length === 64 ? secrets.psk : null),
      });
      rogue.on('secureConnection', (socket) => {
        socket.on('error', () => {});
        socket.resume(); // the client's hello, unread
        socket.write(encodeStreamMessage(encodeHello({ peerId: rogueId, cursors: [{ ns: NS, cursor: 50 }] })));
        setTimeout(() => after(socket), 100);
      });
      await new Promise<void>((resolve) => rogue.listen(0, '127.0.0.1', resolve));
      try {
        let onClose: (failure: SessionFailure | null) => void = () => {};
        const closedWith = new Promise<SessionFailure | null>((resolve) => (onClose = resolve));
        const peer = await connectLanPeer({
          host: '127.0.0.1',
          port: (rogue.address() as net.AddressInfo).port,
          ns: NS,
          lanKey: nsKey,
          peerId: randomBytes(16),
          cursor: 3,
          onClose,
        });
        expect(peer.remoteCursor).toBe(50);
        const failure = await closedWith;
        expect(peer.link.isClosed).toBe(true);
        return failure;
      } finally {
        await new Promise((resolve) => rogue.close(resolve));
      }
    };

    // A well-framed message that is no block frame; a declared length past the limit.
    const badFrame = await dialClosing((socket) => socket.write(encodeStreamMessage(new Uint8Array([1, 99, 0, 0, 0, 0]))));
    expect(badFrame).toBe('bad_frame');
    expect(isProtocolFailure(badFrame)).toBe(true);
    const oversize = await dialClosing((socket) => socket.write(Buffer.from([0x7f, 0xff, 0xff, 0xff])));
    expect(oversize).toBe('oversize');
    expect(isProtocolFailure(oversize)).toBe(true);
    // The server just leaves.
    const plain = await dialClosing((socket) => socket.end());
    expect(plain).toBeNull();
    expect(isProtocolFailure(plain)).toBe(false);
  });

  it('kept serving the concurrent honest client through everything', () => {
    expect(background.failures).toEqual([]);
    expect(background.fetched).toBeGreaterThan(5);
  });
});
