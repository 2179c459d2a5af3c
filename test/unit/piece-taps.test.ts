import { afterEach, describe, expect, it } from 'vitest';
import { PeerLink } from '../../src/engine/peer-link.ts';
import { PeerBlockSource } from '../../src/engine/peer-source.ts';
import { PieceTaps } from '../../src/engine/piece-taps.ts';
import { BlockScheduler } from '../../src/engine/scheduler.ts';
import type { BlockSource } from '../../src/engine/types.ts';
import { MAX_BLOCK_SIZE, PIECE_SIZE, decodeFrame, encodeFrame, type BlockPieces, type Frame, type NamespaceId, type RequestFrame } from '../../src/protocol/index.ts';
import { MemoryChannel } from '../support/memory-channel.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { until } from '../support/until.ts';
import { blockOf } from '../support/seeded-block.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;


/** What the server's POST /ns/:ns/pieces says about `bytes` (its route has its own tests). */
function piecesOf(bytes: Uint8Array): BlockPieces {
  const pieces = [];
  for (let at = 0; at < bytes.length; at += PIECE_SIZE) pieces.push(hashOf(bytes.subarray(at, at + PIECE_SIZE)));
  return { hash: hashOf(bytes), size: bytes.length, pieces };
}

const links: PeerLink[] = [];
afterEach(() => {
  for (const link of links.splice(0)) link.close();
});

/** A PeerBlockSource whose peer is driven by hand: the test answers its REQUESTs frame by frame. */
function handDrivenPeer(taps: PieceTaps, id = 'peer') {
  const [ours, raw] = MemoryChannel.pair();
  const link = new PeerLink({ channel: ours, sharedNamespaces: [NS] });
  links.push(link);
  const requests: RequestFrame[] = [];
  const cancels: number[] = [];
  raw.onmessage = (bytes) => {
    const frame = decodeFrame(bytes);
    if (frame.type === 'request') requests.push(frame);
    if (frame.type === 'cancel') cancels.push(frame.id);
  };
  const send = (frame: Frame) => raw.send(encodeFrame(frame));
  const sendPieces = (requestId: number, bytes: Uint8Array, from: number, to: number) => {
    for (let index = from; index < to; index++) {
      const start = index * PIECE_SIZE;
      send({ type: 'data', id: requestId, offset: start, bytes: bytes.subarray(start, Math.min(bytes.length, start + PIECE_SIZE)) });
    }
  };
  const source = new PeerBlockSource(id, link, { taps });
  source.setAdvert(NS, 100);
  return { source, requests, cancels, send, sendPieces };
}

describe('verified pieces from a peer', () => {
  it('hands a reader checked pieces while the block is still arriving, and stores the whole block after', async () => {
    const bytes = blockOf(MAX_BLOCK_SIZE, 1);
    const want = { ns: NS, hash: hashOf(bytes), sjid: 1, sizeHint: bytes.length };
    const taps = new PieceTaps(nodeSha256);
    const tap = taps.open(want.hash, want.sizeHint);
    const peer = handDrivenPeer(taps);
    const store = new MemoryBlockStore();
    const scheduler = new BlockScheduler({ store, sha256: nodeSha256, sources: () => [peer.source], maxInFlight: 4, events: {} });
    scheduler.prioritise([want]);
    await until(() => peer.requests.length === 1);
    const { id } = peer.requests[0];
    // Bytes before the list: kept, checked once the list comes.
    peer.sendPieces(id, bytes, 0, 3);
    const reading = tap.read(2 * PIECE_SIZE + 10, new AbortController().signal);
    tap.setPieces(piecesOf(bytes));
    const piece = await reading;
    expect(piece).toEqual(bytes.subarray(2 * PIECE_SIZE + 10, 3 * PIECE_SIZE));
    expect(await store.getBlock(want.hash)).toBeNull();
    // The rest, then END: the block is checked whole and stored.
    peer.sendPieces(id, bytes, 3, 64);
    expect(await tap.read(63 * PIECE_SIZE, new AbortController().signal)).toEqual(bytes.subarray(63 * PIECE_SIZE));
    peer.send({ type: 'end', id, totalLength: bytes.length });
    await until(async () => (await store.getBlock(want.hash)) !== null);
    taps.close(tap);
    expect(taps.get(want.hash)).toBeUndefined();
    await scheduler.stop();
  });

  it('penalises a peer whose piece fails its hash, cancels its request and takes the block elsewhere', async () => {
    const bytes = blockOf(5 * PIECE_SIZE + 123, 2);
    const want = { ns: NS, hash: hashOf(bytes), sjid: 1, sizeHint: bytes.length };
    const taps = new PieceTaps(nodeSha256);
    const tap = taps.open(want.hash, want.sizeHint);
    tap.setPieces(piecesOf(bytes));
    const liar = handDrivenPeer(taps, 'liar');
    let serverFetches = 0;
    const server: BlockSource = {
      id: 'server',
      kind: 'server',
      maxInFlight: 1,
      canServe: () => true,
      fetchBlock: async () => {
        serverFetches += 1;
        return bytes;
      },
    };
    const store = new MemoryBlockStore();
    const penalised: string[] = [];
    const scheduler = new BlockScheduler({
      store,
      sha256: nodeSha256,
      sources: () => [liar.source, server],
      maxInFlight: 4,
      events: { penalised: (source) => penalised.push(source.id) },
    });
    scheduler.prioritise([want]);
    await until(() => liar.requests.length === 1);
    const { id } = liar.requests[0];
    liar.sendPieces(id, bytes, 0, 2);
    const bad = bytes.slice(2 * PIECE_SIZE, 3 * PIECE_SIZE);
    bad[7] ^= 0x40;
    liar.send({ type: 'data', id, offset: 2 * PIECE_SIZE, bytes: bad });
    await until(async () => (await store.getBlock(want.hash)) !== null);
    expect(penalised).toEqual(['liar']);
    await until(() => liar.cancels.includes(id));
    expect(serverFetches).toBe(1);
    expect(scheduler.isPenalised('liar')).toBe(true);
    // What was verified before the lie stays readable; the bad piece never was.
    expect(await tap.read(PIECE_SIZE, new AbortController().signal)).toEqual(bytes.subarray(PIECE_SIZE, 2 * PIECE_SIZE));
    const never = new AbortController();
    const badRead = tap.read(2 * PIECE_SIZE, never.signal);
    never.abort(new Error('gave up'));
    await expect(badRead).rejects.toThrow('gave up');
    await scheduler.stop();
  });

  it('gives a reader that comes late what the fetch under way received so far', async () => {
    const bytes = blockOf(4 * PIECE_SIZE, 5);
    const want = { ns: NS, hash: hashOf(bytes), sjid: 1, sizeHint: bytes.length };
    const taps = new PieceTaps(nodeSha256);
    const peer = handDrivenPeer(taps);
    const scheduler = new BlockScheduler({ store: new MemoryBlockStore(), sha256: nodeSha256, sources: () => [peer.source], maxInFlight: 4, events: {} });
    scheduler.setWanted([want]);
    await until(() => peer.requests.length === 1);
    peer.sendPieces(peer.requests[0].id, bytes, 0, 2);
    await until(() => peer.source.link.bytesReceived === 2 * PIECE_SIZE);
    // The peer sends nothing more: only what already arrived can be read.
    const tap = taps.open(want.hash, want.sizeHint);
    tap.setPieces(piecesOf(bytes));
    expect(await tap.read(PIECE_SIZE + 3, new AbortController().signal)).toEqual(bytes.subarray(PIECE_SIZE + 3, 2 * PIECE_SIZE));
    await scheduler.stop();
  });

  it('picks up a fetch already under way at the next piece boundary', async () => {
    const bytes = blockOf(4 * PIECE_SIZE, 3);
    const taps = new PieceTaps(nodeSha256);
    const feeder = {};
    const onBad = () => {
      throw new Error('no piece is bad here');
    };
    // The first 1.5 pieces went by before any reader looked.
    const tap = taps.open(hashOf(bytes), bytes.length);
    tap.setPieces(piecesOf(bytes));
    tap.feed(feeder, PIECE_SIZE + PIECE_SIZE / 2, bytes.subarray(PIECE_SIZE + PIECE_SIZE / 2, 3 * PIECE_SIZE), onBad);
    tap.feed(feeder, 3 * PIECE_SIZE, bytes.subarray(3 * PIECE_SIZE), onBad);
    expect(await tap.read(2 * PIECE_SIZE, new AbortController().signal)).toEqual(bytes.subarray(2 * PIECE_SIZE, 3 * PIECE_SIZE));
    expect(await tap.read(3 * PIECE_SIZE + 1, new AbortController().signal)).toEqual(bytes.subarray(3 * PIECE_SIZE + 1));
    // A gap (which a link never lets through) makes nothing after it readable.
    const other = blockOf(3 * PIECE_SIZE, 4);
    const gapped = taps.open(hashOf(other), other.length);
    gapped.setPieces(piecesOf(other));
    gapped.feed(feeder, 0, other.subarray(0, PIECE_SIZE), onBad);
    gapped.feed(feeder, 2 * PIECE_SIZE, other.subarray(2 * PIECE_SIZE), onBad);
    expect(await gapped.read(0, new AbortController().signal)).toEqual(other.subarray(0, PIECE_SIZE));
    const stop = new AbortController();
    const afterGap = gapped.read(2 * PIECE_SIZE, stop.signal);
    stop.abort(new Error('not readable'));
    await expect(afterGap).rejects.toThrow('not readable');
  });
});
