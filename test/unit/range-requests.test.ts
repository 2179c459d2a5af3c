import { afterEach, describe, expect, it } from 'vitest';
import { BlockServer } from '../../src/engine/block-server.ts';
import { PeerLink } from '../../src/engine/peer-link.ts';
import { PieceTaps } from '../../src/engine/piece-taps.ts';
import {
  FEATURE_RANGE_REQUESTS,
  MAX_BLOCK_SIZE,
  PIECE_SIZE,
  REQUEST_FROM_ALIGNMENT,
  ValidationError,
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

/** REQUEST_FROM: a reader's request, served first and from its offset, to peers that announced it. */

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const HASH = 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9' as BlockHash;


const links: PeerLink[] = [];
afterEach(() => {
  for (const link of links.splice(0)) link.close();
});

async function servingDevice(blocks: Uint8Array[]) {
  const store = new MemoryBlockStore();
  const live = new Set<BlockHash>();
  for (const bytes of blocks) {
    await store.putBlock(hashOf(bytes), bytes);
    live.add(hashOf(bytes));
  }
  return new BlockServer(store, async (ns, hash) => ns === NS && live.has(hash));
}

/** A link facing a hand-driven peer; `announce` makes the peer say it takes range requests. */
function facingRaw(announce: boolean) {
  const [ours, raw] = MemoryChannel.pair();
  const errors: ValidationError[] = [];
  const subject = new PeerLink({ channel: ours, sharedNamespaces: [NS], onProtocolError: (e) => errors.push(e) });
  links.push(subject);
  const received: Frame[] = [];
  raw.onmessage = (bytes) => received.push(decodeFrame(bytes));
  const send = (frame: Frame) => raw.send(encodeFrame(frame));
  if (announce) send({ type: 'have', ns: NS, hashes: [FEATURE_RANGE_REQUESTS] });
  return { subject, received, send, errors };
}

describe('REQUEST_FROM frames', () => {
  it('round-trips and documents its layout', () => {
    const frame: Frame = { type: 'request-from', id: 7, from: 3 * REQUEST_FROM_ALIGNMENT, ns: NS, hash: HASH };
    const bytes = encodeFrame(frame);
    const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
    expect(hex).toBe('0108' + '00000007' + '00030000' + '16' + [...new TextEncoder().encode(NS)].map((b) => b.toString(16).padStart(2, '0')).join('') + HASH);
    expect(decodeFrame(bytes)).toEqual(frame);
  });

  it('refuses an offset that is not a piece boundary inside a block', () => {
    for (const from of [1, REQUEST_FROM_ALIGNMENT - 1, MAX_BLOCK_SIZE, 0xffff_0000]) {
      expect(() => encodeFrame({ type: 'request-from', id: 1, from, ns: NS, hash: HASH })).toThrow(ValidationError);
      const good = encodeFrame({ type: 'request-from', id: 1, from: 0, ns: NS, hash: HASH });
      new DataView(good.buffer).setUint32(6, from);
      expect(() => decodeFrame(good)).toThrow(ValidationError);
    }
  });
});

describe('peer link: reader requests', () => {
  it('serves a reader request before queued ones, its bytes from its offset first, and the block arrives whole', async () => {
    const blocks = [blockOf(MAX_BLOCK_SIZE, 1), blockOf(MAX_BLOCK_SIZE, 2), blockOf(MAX_BLOCK_SIZE - 1000, 3)];
    const [ca, cb] = MemoryChannel.pair();
    const a = new PeerLink({ channel: ca, sharedNamespaces: [NS] });
    const b = new PeerLink({ channel: cb, sharedNamespaces: [NS], server: await servingDevice(blocks) });
    links.push(a, b);
    await until(() => a.takesRangeRequests && b.takesRangeRequests);
    const background = [a.request(NS, hashOf(blocks[0])), a.request(NS, hashOf(blocks[1]))];
    const from = 40 * PIECE_SIZE;
    const reader = a.request(NS, hashOf(blocks[2]), undefined, MAX_BLOCK_SIZE, null, from);
    expect(hashOf(await reader)).toBe(hashOf(blocks[2]));
    expect((await Promise.all(background)).map(hashOf)).toEqual([hashOf(blocks[0]), hashOf(blocks[1])]);
    const data = cb.sent.map((bytes) => decodeFrame(bytes)).filter((frame) => frame.type === 'data');
    const readerData = data.filter((frame) => frame.id === 3).map((frame) => (frame as { offset: number }).offset);
    // Block 1 (first in line) may have started before the reader's request arrived; block 2 waits.
    const firstReader = data.findIndex((frame) => frame.id === 3);
    expect(data.slice(firstReader).some((frame) => frame.id === 2)).toBe(true);
    expect(data.slice(0, firstReader).some((frame) => frame.id === 2)).toBe(false);
    expect(readerData[0]).toBe(from);
    expect(readerData.indexOf(0)).toBe(readerData.findIndex((offset, i) => i > 0 && offset < readerData[i - 1]));
    expect((await Promise.all(background)).map(hashOf)).toEqual([hashOf(blocks[0]), hashOf(blocks[1])]);
  });

  it('answers a reader ahead of the rest of the block being sent, and a newer reader ahead of an older one', async () => {
    const blocks = [blockOf(MAX_BLOCK_SIZE, 11), blockOf(MAX_BLOCK_SIZE, 12), blockOf(MAX_BLOCK_SIZE, 13)];
    const [ca, cb] = MemoryChannel.pair();
    const a = new PeerLink({ channel: ca, sharedNamespaces: [NS] });
    const options = { chunkSize: 16 * 1024, highWaterMark: 128 * 1024, lowWaterMark: 32 * 1024, pollMs: 2 };
    const b = new PeerLink({ channel: cb, sharedNamespaces: [NS], server: await servingDevice(blocks), ...options });
    links.push(a, b);
    await until(() => a.takesRangeRequests && b.takesRangeRequests);
    const ends = (id: number) => cb.sent.findIndex((bytes) => { const frame = decodeFrame(bytes); return frame.type === 'end' && frame.id === id; });
    const firstData = (id: number) => cb.sent.findIndex((bytes) => { const frame = decodeFrame(bytes); return frame.type === 'data' && frame.id === id; });
    // B starts on a plain request; its channel stalls with the block part sent.
    cb.pause();
    const background = a.request(NS, hashOf(blocks[0]), undefined, MAX_BLOCK_SIZE);
    await until(() => cb.bufferedAmount > 100 * 1024);
    const older = a.request(NS, hashOf(blocks[1]), undefined, MAX_BLOCK_SIZE, null, 0);
    await until(() => b.servingRequests === 2);
    cb.resume();
    await until(() => firstData(2) >= 0);
    cb.pause();
    const newer = a.request(NS, hashOf(blocks[2]), undefined, MAX_BLOCK_SIZE, null, 16 * PIECE_SIZE);
    await until(() => b.servingRequests === 3);
    cb.resume();
    expect((await Promise.all([background, older, newer])).map(hashOf)).toEqual(blocks.map(hashOf));
    // Each reader's block went out whole before the block it interrupted went on.
    expect(firstData(2)).toBeLessThan(ends(1));
    expect(ends(2)).toBeLessThan(ends(1));
    expect(firstData(3)).toBeLessThan(ends(2));
    expect(ends(3)).toBeLessThan(ends(2));
    // What was buffered ahead of the newer reader's first byte is bounded by the high-water mark.
    const between = cb.sent.slice(0, firstData(3)).filter((bytes) => { const frame = decodeFrame(bytes); return frame.type === 'data' && frame.id !== 3; });
    const sentBeforeNewer = between.length;
    expect(sentBeforeNewer).toBeLessThan(MAX_BLOCK_SIZE / (16 * 1024));
  });

  it('while a reader waits for its block to be read, keeps little of the block being sent ahead of it', async () => {
    const blocks = [blockOf(MAX_BLOCK_SIZE, 21), blockOf(MAX_BLOCK_SIZE, 22)];
    const server = await servingDevice(blocks);
    const lookup = server.lookup.bind(server);
    let openGate = () => {};
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    server.lookup = async (ns, hash, shared) => {
      if (hash === hashOf(blocks[1])) await gate;
      return lookup(ns, hash, shared);
    };
    const [ca, cb] = MemoryChannel.pair();
    const a = new PeerLink({ channel: ca, sharedNamespaces: [NS] });
    const b = new PeerLink({ channel: cb, sharedNamespaces: [NS], server, chunkSize: 16 * 1024, highWaterMark: 512 * 1024, lowWaterMark: 128 * 1024, readerWaitMark: 32 * 1024, pollMs: 2 });
    links.push(a, b);
    await until(() => a.takesRangeRequests && b.takesRangeRequests);
    cb.pause();
    const background = a.request(NS, hashOf(blocks[0]), undefined, MAX_BLOCK_SIZE);
    await until(() => cb.bufferedAmount > 400 * 1024);
    const reader = a.request(NS, hashOf(blocks[1]), undefined, MAX_BLOCK_SIZE, null, PIECE_SIZE);
    await until(() => b.servingRequests === 2);
    const before = b.bytesSent;
    cb.resume();
    // What was buffered drains; then, while the reader's block is still being read, the block
    // being sent goes on a little at a time.
    await until(() => b.bytesSent > before + 64 * 1024);
    cb.peakBuffered = 0;
    const sent = b.bytesSent;
    await until(() => b.bytesSent > sent + 1024 * 1024);
    expect(cb.peakBuffered).toBeLessThanOrEqual(32 * 1024 + 16 * 1024 + 64);
    openGate();
    expect((await Promise.all([background, reader])).map(hashOf)).toEqual(blocks.map(hashOf));
  });

  it('asks a peer that never announced range requests with a plain REQUEST (version 1 peers keep working)', async () => {
    const { subject, received } = facingRaw(false);
    void subject.request(NS, HASH, undefined, 0, null, 2 * PIECE_SIZE).catch(() => {});
    await until(() => received.some((frame) => frame.type === 'request' || frame.type === 'request-from'));
    expect(received.filter((frame) => frame.type !== 'have').map((frame) => frame.type)).toEqual(['request']);
    // Our own announcement is a HAVE of the feature hash, which a version 1 peer takes as a block nobody holds.
    expect(received.find((frame) => frame.type === 'have')).toEqual({ type: 'have', ns: NS, hashes: [FEATURE_RANGE_REQUESTS] });
  });

  it('does not take the feature announcement for a block', async () => {
    const { subject } = facingRaw(true);
    await until(() => subject.takesRangeRequests);
    expect(subject.peerHas(NS, FEATURE_RANGE_REQUESTS)).toBe(false);
  });

  it('refuses rotated answers that skip, wrap twice, run past their start or end without wrapping', async () => {
    const from = 2 * PIECE_SIZE;
    const chunk = new Uint8Array(PIECE_SIZE);
    const cases: Array<{ name: string; frames: (id: number) => Frame[] }> = [
      { name: 'starts elsewhere', frames: (id) => [{ type: 'data', id, offset: 0, bytes: chunk }] },
      { name: 'passes its start after wrapping', frames: (id) => [
        { type: 'data', id, offset: from, bytes: chunk },
        { type: 'data', id, offset: 0, bytes: chunk },
        { type: 'data', id, offset: PIECE_SIZE, bytes: new Uint8Array(PIECE_SIZE + 1) },
      ] },
      { name: 'wraps twice', frames: (id) => [
        { type: 'data', id, offset: from, bytes: chunk },
        { type: 'data', id, offset: 0, bytes: chunk },
        { type: 'data', id, offset: 0, bytes: chunk },
      ] },
      { name: 'ends without wrapping', frames: (id) => [
        { type: 'data', id, offset: from, bytes: chunk },
        { type: 'end', id, totalLength: PIECE_SIZE },
      ] },
      { name: 'ends before reaching its start again', frames: (id) => [
        { type: 'data', id, offset: from, bytes: chunk },
        { type: 'data', id, offset: 0, bytes: chunk },
        { type: 'end', id, totalLength: 2 * PIECE_SIZE },
      ] },
    ];
    for (const { name, frames } of cases) {
      const { subject, received, send, errors } = facingRaw(true);
      await until(() => subject.takesRangeRequests);
      const answer = subject.request(NS, HASH, undefined, 0, null, from);
      await until(() => received.some((frame) => frame.type === 'request-from'));
      const request = received.find((frame) => frame.type === 'request-from')!;
      expect(request).toMatchObject({ type: 'request-from', from });
      for (const frame of frames((request as { id: number }).id)) send(frame);
      await expect(answer, name).rejects.toThrow();
      await until(() => errors.length === 1);
      expect(subject.isClosed, name).toBe(true);
    }
  });

  it('feeds a rotated answer to a reader tap, which verifies pieces on both sides of the wrap', async () => {
    const bytes = blockOf(5 * PIECE_SIZE + 99, 9);
    const taps = new PieceTaps(nodeSha256);
    const tap = taps.open(hashOf(bytes), bytes.length);
    const pieces = [];
    for (let at = 0; at < bytes.length; at += PIECE_SIZE) pieces.push(hashOf(bytes.subarray(at, at + PIECE_SIZE)));
    tap.setPieces({ hash: hashOf(bytes), size: bytes.length, pieces });
    const feeder = {};
    const bad: Error[] = [];
    const from = 3 * PIECE_SIZE;
    for (let at = from; at < bytes.length; at += PIECE_SIZE) tap.feed(feeder, at, bytes.subarray(at, Math.min(bytes.length, at + PIECE_SIZE)), (e) => bad.push(e));
    for (let at = 0; at < from; at += PIECE_SIZE) tap.feed(feeder, at, bytes.subarray(at, at + PIECE_SIZE), (e) => bad.push(e));
    const signal = new AbortController().signal;
    expect(await tap.read(5 * PIECE_SIZE + 3, signal)).toEqual(bytes.subarray(5 * PIECE_SIZE + 3));
    expect(await tap.read(PIECE_SIZE, signal)).toEqual(bytes.subarray(PIECE_SIZE, 2 * PIECE_SIZE));
    expect(bad).toEqual([]);
  });
});
