import { afterEach, describe, expect, it } from 'vitest';
import { BlockServer } from '../../src/engine/block-server.ts';
import { PeerLink, PeerLinkError, PeerNackError, type PeerLinkOptions } from '../../src/engine/peer-link.ts';
import { PeerBlockSource } from '../../src/engine/peer-source.ts';
import { BlockScheduler } from '../../src/engine/scheduler.ts';
import type { BlockSource, WantedBlock } from '../../src/engine/types.ts';
import {
  MAX_BLOCK_SIZE,
  ValidationError,
  FEATURE_RANGE_REQUESTS,
  decodeFrame,
  encodeFrame,
  type BlockHash,
  type Frame,
  type NamespaceId,
} from '../../src/protocol/index.ts';
import { MemoryChannel } from '../support/memory-channel.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';
import { blockOf } from '../support/seeded-block.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const OTHER = 'otherotherotherother12' as NamespaceId;


/** A device's blocks: stored bytes plus which of them belong to live files of which namespace. */
class Device {
  readonly store = new MemoryBlockStore();
  readonly live = new Map<NamespaceId, Set<BlockHash>>();
  liveChecks = 0;
  liveDelayMs = 0;
  readonly server = new BlockServer(this.store, async (ns, hash) => {
    this.liveChecks += 1;
    if (this.liveDelayMs > 0) await sleep(this.liveDelayMs);
    return this.live.get(ns)?.has(hash) ?? false;
  });
  async add(ns: NamespaceId, bytes: Uint8Array, { stored = true, live = true } = {}): Promise<BlockHash> {
    const hash = hashOf(bytes);
    if (stored) await this.store.putBlock(hash, bytes);
    if (live) {
      if (!this.live.has(ns)) this.live.set(ns, new Set());
      this.live.get(ns)!.add(hash);
    }
    return hash;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


const links: PeerLink[] = [];
afterEach(() => {
  for (const link of links.splice(0)) link.close();
});

function link(channel: MemoryChannel, options: Partial<PeerLinkOptions> = {}): PeerLink {
  const made = new PeerLink({ channel, sharedNamespaces: [NS], ...options });
  links.push(made);
  return made;
}

/** Two links joined by an in-memory channel; `b` serves from `device`. */
function connected(device: Device, options: { a?: Partial<PeerLinkOptions>; b?: Partial<PeerLinkOptions> } = {}) {
  const [ca, cb] = MemoryChannel.pair();
  const a = link(ca, options.a);
  const b = link(cb, { server: device.server, ...options.b });
  return { a, b, ca, cb };
}

/** A link facing a hand-driven peer: the test reads and writes raw frames on `raw`. */
function facingRaw(options: Partial<PeerLinkOptions> = {}) {
  const [ours, raw] = MemoryChannel.pair();
  const errors: ValidationError[] = [];
  let closed = 0;
  const subject = link(ours, { onProtocolError: (e) => errors.push(e), onClose: () => closed++, ...options });
  const received: Frame[] = [];
  raw.onmessage = (bytes) => received.push(decodeFrame(bytes));
  const send = (frame: Frame) => raw.send(encodeFrame(frame));
  return { subject, raw, ours, received, send, errors, closed: () => closed };
}

/** Leaves out the HAVE every link sends when it opens to announce that it takes REQUEST_FROM. */
const notFeature = (frame: Frame) => !(frame.type === 'have' && frame.hashes.length === 1 && frame.hashes[0] === FEATURE_RANGE_REQUESTS);

const dataFrames = (channel: MemoryChannel, id?: number) =>
  channel.sent.map((bytes) => decodeFrame(bytes)).filter((f) => f.type === 'data' && (id === undefined || f.id === id));

describe('peer link: fetching', () => {
  it('fetches blocks of any size byte for byte', async () => {
    const device = new Device();
    const blocks = [blockOf(1, 1), blockOf(100_000, 2), blockOf(MAX_BLOCK_SIZE, 3), blockOf(65_536 * 3, 4)];
    const hashes = await Promise.all(blocks.map((bytes) => device.add(NS, bytes)));
    const { a, b } = connected(device);
    for (let i = 0; i < blocks.length; i++) {
      const got = await a.request(NS, hashes[i], undefined, i === 1 ? 50 : blocks[i].length);
      expect(got.length).toBe(blocks[i].length);
      expect(hashOf(got)).toBe(hashes[i]);
    }
    expect(b.blocksServed).toBe(4);
    expect(a.bytesReceived).toBe(blocks.reduce((n, x) => n + x.length, 0));
    expect(a.pendingRequests).toBe(0);
    expect(b.servingRequests).toBe(0);
  });

  it('multiplexes concurrent requests, both ways at once', async () => {
    const left = new Device();
    const right = new Device();
    const leftBlocks = Array.from({ length: 6 }, (_, i) => blockOf(300_000 + i, 10 + i));
    const rightBlocks = Array.from({ length: 6 }, (_, i) => blockOf(200_000 + i, 20 + i));
    const leftHashes = await Promise.all(leftBlocks.map((x) => left.add(NS, x)));
    const rightHashes = await Promise.all(rightBlocks.map((x) => right.add(NS, x)));
    const [ca, cb] = MemoryChannel.pair();
    const a = link(ca, { server: left.server });
    const b = link(cb, { server: right.server });
    const [fromRight, fromLeft] = await Promise.all([
      Promise.all(rightHashes.map((hash) => a.request(NS, hash))),
      Promise.all(leftHashes.map((hash) => b.request(NS, hash))),
    ]);
    expect(fromRight.map(hashOf)).toEqual(rightHashes);
    expect(fromLeft.map(hashOf)).toEqual(leftHashes);
  });

  it('refuses to start when the channel is not open or too many requests are out', async () => {
    const device = new Device();
    const hash = await device.add(NS, blockOf(10, 1));
    const [ca] = MemoryChannel.pair();
    ca.isOpen = false;
    const closedLink = link(ca);
    await expect(closedLink.request(NS, hash)).rejects.toMatchObject({ code: 'not_open' });

    const { subject } = facingRaw({ maxRequests: 2 });
    void subject.request(NS, hash).catch(() => {});
    void subject.request(NS, hash).catch(() => {});
    await expect(subject.request(NS, hash)).rejects.toMatchObject({ code: 'too_many' });
    await expect(subject.request(NS, 'nope' as BlockHash)).rejects.toBeInstanceOf(PeerLinkError);
  });
});

describe('peer link: serving rule', () => {
  it('refuses namespaces the relay did not say we share (forbidden)', async () => {
    const device = new Device();
    const hash = await device.add(OTHER, blockOf(10, 1));
    const { a } = connected(device, { a: { sharedNamespaces: [NS, OTHER] }, b: { sharedNamespaces: [NS] } });
    await expect(a.request(OTHER, hash)).rejects.toEqual(new PeerNackError('forbidden'));
    expect(device.liveChecks).toBe(0);
  });

  it('follows updates of the shared namespaces', async () => {
    const device = new Device();
    const hash = await device.add(OTHER, blockOf(10, 1));
    const { a, b } = connected(device, { a: { sharedNamespaces: [OTHER] } });
    await expect(a.request(OTHER, hash)).rejects.toMatchObject({ reason: 'forbidden' });
    b.setSharedNamespaces([NS, OTHER]);
    expect(hashOf(await a.request(OTHER, hash))).toBe(hash);
    b.setSharedNamespaces([NS]);
    await expect(a.request(OTHER, hash)).rejects.toMatchObject({ reason: 'forbidden' });
  });

  it('refuses when no block server is given', async () => {
    const [ca, cb] = MemoryChannel.pair();
    const a = link(ca);
    link(cb);
    await expect(a.request(NS, hashOf(blockOf(5, 5)))).rejects.toMatchObject({ reason: 'forbidden' });
  });

  it('answers not_found for blocks of no live file, and for live blocks not stored yet', async () => {
    const device = new Device();
    const stale = await device.add(NS, blockOf(10, 1), { live: false });
    const elsewhere = await device.add(OTHER, blockOf(10, 2));
    const missing = await device.add(NS, blockOf(10, 3), { stored: false });
    const { a } = connected(device);
    for (const hash of [stale, elsewhere, missing]) {
      await expect(a.request(NS, hash)).rejects.toEqual(new PeerNackError('not_found'));
    }
  });

  it('answers busy past the bound of requests served at once', async () => {
    const device = new Device();
    device.liveDelayMs = 30;
    const hashes = await Promise.all([1, 2, 3].map((i) => device.add(NS, blockOf(1000, i))));
    const { a } = connected(device, { b: { maxServing: 2 } });
    const results = await Promise.allSettled(hashes.map((hash) => a.request(NS, hash)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect((results[2] as PromiseRejectedResult).reason).toEqual(new PeerNackError('busy'));
  });

  it('answers busy when the store fails', async () => {
    const device = new Device();
    const hash = await device.add(NS, blockOf(10, 1));
    device.store.getBlock = async () => {
      throw new Error('disk on fire');
    };
    const { a } = connected(device);
    await expect(a.request(NS, hash)).rejects.toMatchObject({ reason: 'busy' });
  });

  it("serves through the store's readBlock when it has one, getBlock otherwise", async () => {
    const device = new Device();
    const bytes = blockOf(MAX_BLOCK_SIZE, 7);
    const hash = await device.add(NS, bytes);
    const reads: string[] = [];
    const getBlock = device.store.getBlock.bind(device.store);
    device.store.getBlock = async (h) => (reads.push('getBlock'), getBlock(h));
    const withRead = device.store as typeof device.store & { readBlock?: (h: BlockHash) => Promise<Uint8Array | null> };
    withRead.readBlock = async (h) => (reads.push('readBlock'), getBlock(h));
    const { a } = connected(device);
    expect(hashOf(await a.request(NS, hash, undefined, bytes.length))).toBe(hash);
    expect(reads).toEqual(['readBlock']);
    delete withRead.readBlock;
    expect(hashOf(await a.request(NS, hash, undefined, bytes.length))).toBe(hash);
    expect(reads).toEqual(['readBlock', 'getBlock']);
  });

  it('hands each read buffer back once the channel copied its last frame, and the peer gets every byte', async () => {
    const device = new Device();
    const blocks = [blockOf(MAX_BLOCK_SIZE, 31), blockOf(MAX_BLOCK_SIZE - 5, 32), blockOf(200_000, 33)];
    const hashes = await Promise.all(blocks.map((bytes) => device.add(NS, bytes)));
    const getBlock = device.store.getBlock.bind(device.store);
    const lent = new Set<Uint8Array>();
    const released: Uint8Array[] = [];
    const store = device.store as typeof device.store & { readBlock?: (h: BlockHash) => Promise<Uint8Array | null>; releaseRead?: (bytes: Uint8Array) => void };
    store.readBlock = async (h) => {
      const bytes = (await getBlock(h))!.slice();
      lent.add(bytes);
      return bytes;
    };
    // A store reuses a buffer handed back at once: scribbling over it catches a release before the last frame is out.
    store.releaseRead = (bytes) => {
      expect(lent.has(bytes)).toBe(true);
      released.push(bytes);
      bytes.fill(0xee);
    };
    const { a, cb } = connected(device);
    expect(cb.copiesOnSend).toBe(true);
    const got = await Promise.all(hashes.map((hash, i) => a.request(NS, hash, undefined, blocks[i].length)));
    expect(got.map(hashOf)).toEqual(hashes);
    expect(released.length).toBe(3);
  });

  it('tells the peer shutting_down for what it still waits for when closing', async () => {
    const device = new Device();
    device.liveDelayMs = 50;
    const hash = await device.add(NS, blockOf(10, 1));
    const { a, b } = connected(device);
    const pending = a.request(NS, hash);
    await until(() => b.servingRequests === 1);
    b.close();
    await expect(pending).rejects.toEqual(new PeerNackError('shutting_down'));
  });
});

describe('peer link: cancel, stall, close', () => {
  it('sends CANCEL on abort and the server stops sending that block', async () => {
    const device = new Device();
    const hash = await device.add(NS, blockOf(MAX_BLOCK_SIZE, 7));
    const { a, ca, cb } = connected(device, { b: { chunkSize: 16 * 1024, highWaterMark: 64 * 1024, lowWaterMark: 16 * 1024 } });
    const controller = new AbortController();
    ca.tap = (bytes) => {
      if (decodeFrame(bytes).type === 'data') controller.abort(new Error('not wanted any more'));
    };
    await expect(a.request(NS, hash, controller.signal)).rejects.toThrow('not wanted any more');
    expect(ca.sent.map((bytes) => decodeFrame(bytes)).filter(notFeature).map((frame) => frame.type)).toEqual(['request', 'cancel']);
    await sleep(30);
    const sent = dataFrames(cb);
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.length).toBeLessThan(20); // of 256 chunks
    expect(cb.sent.some((bytes) => decodeFrame(bytes).type === 'end')).toBe(false);
    // Late frames of the cancelled request are expected, not a protocol error.
    expect(a.isOpen).toBe(true);
    const other = await device.add(NS, blockOf(100, 8));
    expect(hashOf(await a.request(NS, other))).toBe(other);
  });

  it('drops a queued request on CANCEL without ever reading it', async () => {
    const device = new Device();
    device.liveDelayMs = 20;
    const hashes = await Promise.all([1, 2, 3].map((i) => device.add(NS, blockOf(100, i))));
    const { send, received } = facingRaw({ server: device.server });
    send({ type: 'request', id: 1, ns: NS, hash: hashes[0] });
    send({ type: 'request', id: 2, ns: NS, hash: hashes[1] });
    send({ type: 'request', id: 3, ns: NS, hash: hashes[2] });
    send({ type: 'cancel', id: 3 });
    await until(() => received.filter((f) => f.type === 'end').length === 2);
    await sleep(40);
    expect(received.filter((f) => f.type === 'end').map((f) => f.id)).toEqual([1, 2]);
    expect(received.some((f) => 'id' in f && f.id === 3)).toBe(false);
    expect(device.liveChecks).toBe(2);
  });

  it('rejects a request when no frame arrives for the stall timeout, and cancels it', async () => {
    const { subject, received } = facingRaw({ stallTimeoutMs: 80 });
    const started = Date.now();
    await expect(subject.request(NS, hashOf(blockOf(5, 5)))).rejects.toMatchObject({ code: 'stalled' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(75);
    await until(() => received.filter(notFeature).length === 2);
    expect(received.filter(notFeature).map((f) => f.type)).toEqual(['request', 'cancel']);
  });

  it('rejects a started request that stops receiving chunks', async () => {
    const { subject, send } = facingRaw({ stallTimeoutMs: 80 });
    const pending = subject.request(NS, hashOf(blockOf(5, 5)));
    send({ type: 'data', id: 1, offset: 0, bytes: new Uint8Array(10) });
    await expect(pending).rejects.toMatchObject({ code: 'stalled' });
    expect(subject.isOpen).toBe(true);
  });

  it('keeps a queued request alive while the peer is busy sending another one', async () => {
    const { subject, send } = facingRaw({ stallTimeoutMs: 200 });
    const first = subject.request(NS, hashOf(blockOf(5, 5)));
    const second = subject.request(NS, hashOf(blockOf(6, 6)));
    const started = Date.now();
    let chunks = 0;
    // Request 1 takes longer than the stall timeout; request 2 waits behind it all along.
    while (Date.now() - started < 400) {
      send({ type: 'data', id: 1, offset: chunks * 4, bytes: new Uint8Array(4) });
      chunks += 1;
      await sleep(20);
    }
    send({ type: 'end', id: 1, totalLength: chunks * 4 });
    send({ type: 'data', id: 2, offset: 0, bytes: new Uint8Array(3).fill(2) });
    send({ type: 'end', id: 2, totalLength: 3 });
    expect((await first).length).toBe(chunks * 4);
    expect([...(await second)]).toEqual([2, 2, 2]);
  });

  it('rejects every pending request when the channel closes mid-transfer', async () => {
    const { subject, send, raw, closed } = facingRaw();
    const first = subject.request(NS, hashOf(blockOf(5, 5)));
    const second = subject.request(NS, hashOf(blockOf(6, 6)));
    send({ type: 'data', id: 1, offset: 0, bytes: new Uint8Array(1000) });
    await sleep(5);
    raw.close();
    await expect(first).rejects.toMatchObject({ code: 'closed' });
    await expect(second).rejects.toMatchObject({ code: 'closed' });
    expect(subject.isClosed).toBe(true);
    expect(closed()).toBe(1);
    await expect(subject.request(NS, hashOf(blockOf(5, 5)))).rejects.toMatchObject({ code: 'closed' });
  });

  it('stops serving when the channel closes mid-block', async () => {
    const device = new Device();
    const hash = await device.add(NS, blockOf(MAX_BLOCK_SIZE, 9));
    const { a, b, cb } = connected(device, { b: { chunkSize: 16 * 1024, highWaterMark: 32 * 1024 } });
    const pending = a.request(NS, hash);
    await until(() => a.bytesReceived > 0);
    a.close();
    await expect(pending).rejects.toMatchObject({ code: 'closed' });
    await until(() => b.isClosed);
    const count = dataFrames(cb).length;
    await sleep(20);
    expect(dataFrames(cb).length).toBe(count);
    expect(count).toBeLessThan(256);
  });
});

describe('peer link: hostile peer', () => {
  const cases: Array<[string, (send: (frame: Frame) => void, raw: MemoryChannel) => void]> = [
    ['garbage bytes', (_send, raw) => raw.send(Uint8Array.of(0xff, 0x00, 0x13))],
    ['an empty message (a text message through the adapter)', (_send, raw) => raw.send(new Uint8Array(0))],
    ['an unknown frame type', (_send, raw) => raw.send(Uint8Array.of(1, 99, 0, 0, 0, 1))],
    ['a chunk with a gap', (send) => {
      send({ type: 'data', id: 1, offset: 0, bytes: new Uint8Array(10) });
      send({ type: 'data', id: 1, offset: 20, bytes: new Uint8Array(10) });
    }],
    ['a chunk that does not start at 0', (send) => send({ type: 'data', id: 1, offset: 5, bytes: new Uint8Array(10) })],
    ['an END whose length does not match', (send) => {
      send({ type: 'data', id: 1, offset: 0, bytes: new Uint8Array(10) });
      send({ type: 'end', id: 1, totalLength: 11 });
    }],
    ['an END before any data', (send) => send({ type: 'end', id: 1, totalLength: 1 })],
    ['an answer to a request never made', (send) => send({ type: 'nack', id: 77, reason: 'busy' })],
    ['a REQUEST reusing an id in service', (send) => {
      send({ type: 'request', id: 5, ns: NS, hash: hashOf(blockOf(3, 3)) });
      send({ type: 'request', id: 5, ns: NS, hash: hashOf(blockOf(3, 3)) });
    }],
  ];
  it.each(cases)('closes the link and reports %s', async (_label, misbehave) => {
    const device = new Device();
    device.liveDelayMs = 20;
    await device.add(NS, blockOf(3, 3));
    const { subject, send, raw, errors, closed } = facingRaw({ server: device.server });
    const pending = subject.request(NS, hashOf(blockOf(5, 5)));
    misbehave(send, raw);
    await expect(pending).rejects.toMatchObject({ code: 'closed' });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(ValidationError);
    expect(subject.isClosed).toBe(true);
    await until(() => !raw.isOpen);
    expect(closed()).toBe(1);
  });

  it('ignores the peer announcing blocks of a namespace we do not share', async () => {
    const { subject, send } = facingRaw();
    const hash = hashOf(blockOf(1, 1));
    send({ type: 'have', ns: OTHER, hashes: [hash] });
    await sleep(5);
    expect(subject.peerHas(OTHER, hash)).toBe(false);
    expect(subject.isOpen).toBe(true);
  });
});

describe('peer link: backpressure', () => {
  it.each([
    ['bufferedamountlow fires', true],
    ['only polling (as with @roamhq/wrtc)', false],
  ])('pauses while the channel buffers too much: %s', async (_label, firesLowEvent) => {
    const device = new Device();
    const bytes = blockOf(MAX_BLOCK_SIZE, 11);
    const hash = await device.add(NS, bytes);
    const { a, b, cb } = connected(device, {
      b: { chunkSize: 16 * 1024, highWaterMark: 128 * 1024, lowWaterMark: 32 * 1024, pollMs: 2 },
    });
    cb.firesLowEvent = firesLowEvent;
    cb.pause();
    const pending = a.request(NS, hash);
    await until(() => dataFrames(cb).length > 0);
    await sleep(30);
    // Sending stopped once past the high-water mark (8 chunks), well short of the block.
    const whilePaused = dataFrames(cb).length;
    expect(whilePaused).toBeGreaterThanOrEqual(8);
    expect(whilePaused).toBeLessThanOrEqual(9);
    expect(cb.bufferedAmount).toBeLessThanOrEqual(128 * 1024 + 16 * 1024 + 64);
    cb.resume();
    expect(hashOf(await pending)).toBe(hash);
    expect(cb.peakBuffered).toBeLessThanOrEqual(128 * 1024 + 16 * 1024 + 64);
    expect(b.bytesSent).toBe(MAX_BLOCK_SIZE);
  });
});

describe('peer link: waiting for the channel to drain', () => {
  it('once bufferedamountlow has fired, waits on it at the resume level instead of polling', async () => {
    const device = new Device();
    const first = blockOf(MAX_BLOCK_SIZE, 12);
    const second = blockOf(MAX_BLOCK_SIZE, 13);
    const [firstHash, secondHash] = [await device.add(NS, first), await device.add(NS, second)];
    // A poll that would take a minute: only the event can wake the sender in this test's time.
    const { a, cb } = connected(device, {
      b: { chunkSize: 16 * 1024, highWaterMark: 128 * 1024, lowWaterMark: 32 * 1024, pollMs: 2, eventPollMs: 60_000 },
    });
    // The first block fills and drains the buffer many times: the event has fired.
    expect(hashOf(await a.request(NS, firstHash))).toBe(firstHash);
    let reads = 0;
    let buffered = cb.bufferedAmount;
    Object.defineProperty(cb, 'bufferedAmount', {
      get: () => {
        reads += 1;
        return buffered;
      },
      set: (value: number) => (buffered = value),
    });
    const framesBefore = dataFrames(cb).length;
    cb.pause();
    const pending = a.request(NS, secondHash);
    await until(() => dataFrames(cb).length >= framesBefore + 8);
    await sleep(10);
    const readsWhenPaused = reads;
    await sleep(100);
    // No poll every 2 ms while paused (about 50 reads in 100 ms): nothing looked at the buffer.
    expect(reads - readsWhenPaused).toBeLessThanOrEqual(2);
    // The event is aimed where the sender resumes (a quarter of the high-water mark here).
    expect(cb.bufferedAmountLowThreshold).toBe(32 * 1024);
    cb.resume();
    expect(hashOf(await pending)).toBe(secondHash);
  });

  it('keeps polling where the event never fires (as with @roamhq/wrtc)', async () => {
    const device = new Device();
    const bytes = blockOf(MAX_BLOCK_SIZE, 14);
    const hash = await device.add(NS, bytes);
    const { a, cb } = connected(device, {
      b: { chunkSize: 16 * 1024, highWaterMark: 128 * 1024, lowWaterMark: 32 * 1024, pollMs: 2, eventPollMs: 60_000 },
    });
    cb.firesLowEvent = false;
    expect(hashOf(await a.request(NS, hash))).toBe(hash);
  });
});

describe('peer link: HAVE', () => {
  it('announces blocks to the peer, which remembers and reports them', async () => {
    const device = new Device();
    const announced: Array<[NamespaceId, readonly BlockHash[]]> = [];
    const { a, ca } = connected(device, { a: { onHave: (ns, hashes) => announced.push([ns, hashes]) } });
    const hashes = Array.from({ length: 5000 }, (_, i) => hashOf(blockOf(4, i)));
    const b = links[1];
    b.sendHave(NS, hashes);
    b.sendHave(OTHER, hashes); // not shared: nothing is sent
    await until(() => announced.length === 2);
    expect(announced.map(([ns, list]) => [ns, list.length])).toEqual([
      [NS, 4096],
      [NS, 904],
    ]);
    expect(a.peerHas(NS, hashes[4999])).toBe(true);
    expect(a.peerHas(OTHER, hashes[0])).toBe(false);
    expect(ca.peer.sent.filter((bytes) => notFeature(decodeFrame(bytes))).length).toBe(2);
  });

  it('tells the peer which blocks it is fetching from the server, without claiming to hold them', async () => {
    const device = new Device();
    const fetching: Array<[NamespaceId, readonly BlockHash[]]> = [];
    const { a } = connected(device, { a: { onFetching: (ns, hashes) => fetching.push([ns, hashes]) } });
    const hashes = [hashOf(blockOf(4, 1)), hashOf(blockOf(4, 2))];
    const b = links[1];
    b.sendFetching(OTHER, hashes); // not shared: nothing is sent
    b.sendFetching(NS, hashes);
    await until(() => fetching.length === 1);
    expect(fetching).toEqual([[NS, hashes]]);
    expect(a.peerHas(NS, hashes[0])).toBe(false);
  });

  it('remembers a bounded number of announced blocks, forgetting the oldest', async () => {
    const { subject, send } = facingRaw({ maxAnnounced: 3 });
    const hashes = Array.from({ length: 5 }, (_, i) => hashOf(blockOf(4, i)));
    send({ type: 'have', ns: NS, hashes });
    await until(() => subject.peerHas(NS, hashes[4]));
    expect(hashes.map((hash) => subject.peerHas(NS, hash))).toEqual([false, false, true, true, true]);
    subject.setSharedNamespaces([OTHER]);
    expect(subject.peerHas(NS, hashes[4])).toBe(false);
  });
});

describe('peer block source', () => {
  const want = (hash: BlockHash, sjid: number, ns = NS): WantedBlock => ({ ns, hash, sjid, sizeHint: 0 });

  it('claims blocks covered by the advert or announced by HAVE, only while the link is open', async () => {
    const device = new Device();
    const { a, b } = connected(device, { a: { sharedNamespaces: [NS, OTHER] } });
    const source = new PeerBlockSource('peer-1', a);
    const hash = hashOf(blockOf(3, 3));
    expect(source.canServe(want(hash, 1))).toBe(false);
    source.setAdvert(NS, 5);
    expect(source.canServe(want(hash, 5))).toBe(true);
    expect(source.canServe(want(hash, 6))).toBe(false);
    b.sendHave(NS, [hash]);
    await until(() => a.peerHas(NS, hash));
    expect(source.canServe(want(hash, 6))).toBe(true);
    source.clearAdvert(NS);
    expect(source.canServe(want(hashOf(blockOf(4, 4)), 1))).toBe(false);
    a.close();
    expect(source.canServe(want(hash, 1))).toBe(false);
  });

  it('feeds the scheduler: blocks come from the peer, not the server, and are counted', async () => {
    const device = new Device();
    const blocks = Array.from({ length: 12 }, (_, i) => blockOf(200_000 + i, 30 + i));
    const hashes = await Promise.all(blocks.map((x) => device.add(NS, x)));
    const { a } = connected(device);
    const peer = new PeerBlockSource('peer-1', a, { maxInFlight: 4 });
    peer.setAdvert(NS, 10);
    const serverAsked: BlockHash[] = [];
    const server: BlockSource = {
      id: 'server',
      kind: 'server',
      maxInFlight: 2,
      canServe: () => true,
      fetchBlock: async (w) => {
        serverAsked.push(w.hash);
        return blocks[hashes.indexOf(w.hash)];
      },
    };
    const store = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [peer, server], maxInFlight: 6, events: {} });
    scheduler.setWanted(hashes.map((hash, i) => want(hash, i < 10 ? 3 : 20)));
    await scheduler.whenIdle();
    await scheduler.stop();
    expect(store.blocks.size).toBe(12);
    // Blocks of entry 20 lie past the peer's advert: only those come from the server.
    expect(serverAsked.sort()).toEqual(hashes.slice(10).sort());
    expect(peer.blocksReceived).toBe(10);
    expect(peer.bytesReceived).toBe(blocks.slice(0, 10).reduce((n, x) => n + x.length, 0));
    expect(peer.bytesPerSecond()).toBeGreaterThan(0);
  });

  it('lets the scheduler catch a peer serving wrong bytes and fall back to the server', async () => {
    const device = new Device();
    const bytes = blockOf(50_000, 99);
    const hash = hashOf(bytes);
    // The lying device stores flipped bytes under the real hash.
    await device.store.putBlock(hash, bytes.map((x) => x ^ 1));
    device.live.set(NS, new Set([hash]));
    const { a } = connected(device);
    const peer = new PeerBlockSource('liar', a);
    peer.setAdvert(NS, 9);
    const server: BlockSource = { id: 'server', kind: 'server', maxInFlight: 1, canServe: () => true, fetchBlock: async () => bytes };
    const store = new MemoryBlockStore();
    const penalised: string[] = [];
    const scheduler = new BlockScheduler({
      store,
      sha256: nodeSha256,
      sources: () => [peer, server],
      maxInFlight: 2,
      events: { penalised: (source) => penalised.push(source.id) },
    });
    scheduler.setWanted([want(hash, 1)]);
    await scheduler.whenIdle();
    await scheduler.stop();
    expect(penalised).toEqual(['liar']);
    expect(hashOf((await store.getBlock(hash))!)).toBe(hash);
  });

  it('sends every REQUEST of a batch at once and returns what arrived, leaving refused blocks out', async () => {
    const device = new Device();
    const blocks = Array.from({ length: 10 }, (_, i) => blockOf(3_000 + i, 70 + i));
    const hashes = await Promise.all(blocks.map((x) => device.add(NS, x)));
    const refused = await device.add(NS, blockOf(500, 99), { live: false });
    const { a, ca } = connected(device);
    const source = new PeerBlockSource('peer-1', a);
    const wanted = [...hashes.slice(0, 5), refused, ...hashes.slice(5)].map((hash) => ({ ns: NS, hash, sjid: 1, sizeHint: 3_000 }));
    const fetching = source.fetchBlocks(wanted, new AbortController().signal);
    // All eleven requests left before any answer could arrive: one round trip.
    expect(ca.sent.map((frame) => decodeFrame(frame).type)).toEqual(Array(11).fill('request'));
    const got = await fetching;
    expect([...got.keys()]).toEqual(expect.arrayContaining(hashes));
    expect(got.size).toBe(10);
    hashes.forEach((hash, i) => expect(hashOf(got.get(hash)!)).toBe(hashOf(blocks[i])));
    expect(source.blocksReceived).toBe(10);
  });

  it('batches small blocks through the scheduler within the link’s room for requests', async () => {
    const device = new Device();
    const blocks = Array.from({ length: 60 }, (_, i) => blockOf(2_000 + i, 10 + i));
    const hashes = await Promise.all(blocks.map((x) => device.add(NS, x)));
    const { a, b, ca } = connected(device);
    const peer = new PeerBlockSource('peer-1', a);
    peer.setAdvert(NS, 5);
    const batchSizes: number[] = [];
    const fetchBlocks = peer.fetchBlocks.bind(peer);
    peer.fetchBlocks = (wants, signal) => (batchSizes.push(wants.length), fetchBlocks(wants, signal));
    const failures: unknown[] = [];
    const serverAsked: BlockHash[] = [];
    const server: BlockSource = { id: 'server', kind: 'server', maxInFlight: 2, canServe: () => true, fetchBlock: async (w) => (serverAsked.push(w.hash), blocks[hashes.indexOf(w.hash)]) };
    const store = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [peer, server], maxInFlight: 6, events: { failed: (_w, _s, e) => failures.push(e) } });
    scheduler.setWanted(hashes.map((hash) => ({ ns: NS, hash, sjid: 1, sizeHint: 2_000 })));
    await scheduler.whenIdle();
    await scheduler.stop();
    expect(store.blocks.size).toBe(60);
    expect(failures).toEqual([]);
    expect(serverAsked).toEqual([]);
    expect(b.blocksServed).toBe(60);
    expect(ca.sent.filter((frame) => decodeFrame(frame).type === 'request').length).toBe(60);
    // Batches of several blocks, never more requests at once than the link (and the peer) allows.
    expect(batchSizes.length).toBeLessThan(20);
    expect(Math.max(...batchSizes)).toBe(8);
  });
});
