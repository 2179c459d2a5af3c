import { describe, expect, it } from 'vitest';
import { BridgedBlockSource, type BridgeFetch } from '../../src/engine/bridged-source.ts';
import { PieceMismatchError, PieceTaps } from '../../src/engine/piece-taps.ts';
import { PipelineThroughput } from '../../src/engine/pipeline-throughput.ts';
import {
  MAX_BLOCK_SIZE,
  MAX_BRIDGE_BATCH_BYTES,
  MAX_BRIDGE_READ_BYTES,
  PIECE_SIZE,
  ValidationError,
  parseAdvertOut,
  parseBridgeFetchIn,
  parseBridgeFetchReply,
  parseBridgePieceAck,
  parseBridgePieceOut,
  parseBridgeReadOut,
  parseBridgeStreamReply,
  parseBridgeReadReply,
  parseWelcome,
  type BlockHash,
  type NamespaceId,
} from '../../src/protocol/index.ts';
import { BridgeReads } from '../../workers/bridge-reads.ts';
import { MemoryBlockStore, hashOf, nodeSha256 } from '../support/memory-stores.ts';
import { blockOf } from '../support/seeded-block.ts';

const NS = 'gLYh2GuQa-XXMRoUUKJCRg' as NamespaceId;
const OTHER_NS = 'hMZi3HvRb-YYNSpVVLKDSh' as NamespaceId;
const PEER = 'p_ZiqhjNqqU5qtr-04';
const HASH = 'ab'.repeat(32) as BlockHash;

describe('bridge relay events', () => {
  it('accepts an advert marked lan, and only with true', () => {
    const advert = { peerId: PEER, label: 'LAN peer 1a2b3c4d', ns: NS, cursor: 7, at: 1 };
    expect(parseAdvertOut(advert).lan).toBeUndefined();
    expect(parseAdvertOut({ ...advert, lan: true }).lan).toBe(true);
    expect(() => parseAdvertOut({ ...advert, lan: false })).toThrow(ValidationError);
    expect(() => parseAdvertOut({ ...advert, lan: 'yes' })).toThrow(ValidationError);
  });

  it('reads a welcome that says the relay bridges LAN peers', () => {
    const welcome = { peerId: PEER, namespaces: [NS] };
    expect(parseWelcome(welcome).lanBridge).toBeUndefined();
    expect(parseWelcome({ ...welcome, lanBridge: true }).lanBridge).toBe(true);
    expect(() => parseWelcome({ ...welcome, lanBridge: 1 })).toThrow(ValidationError);
  });

  it('parses a bridge-fetch request and refuses extra or malformed fields', () => {
    expect(parseBridgeFetchIn({ ns: NS, peerId: PEER, hash: HASH })).toEqual({ ns: NS, peerId: PEER, hash: HASH });
    expect(() => parseBridgeFetchIn({ ns: NS, peerId: PEER, hash: HASH, extra: 1 })).toThrow(ValidationError);
    expect(() => parseBridgeFetchIn({ ns: NS, peerId: 'peer', hash: HASH })).toThrow(ValidationError);
    expect(() => parseBridgeFetchIn({ ns: NS, peerId: PEER, hash: 'AB'.repeat(32) })).toThrow(ValidationError);
    expect(() => parseBridgeFetchIn(null)).toThrow(ValidationError);
  });

  it('takes a stream id on bridge-fetch, within 1 … 2^31 - 1', () => {
    expect(parseBridgeFetchIn({ ns: NS, peerId: PEER, hash: HASH, stream: 7 })).toEqual({ ns: NS, peerId: PEER, hash: HASH, stream: 7 });
    for (const stream of [0, -1, 2 ** 31, 1.5, '7']) expect(() => parseBridgeFetchIn({ ns: NS, peerId: PEER, hash: HASH, stream })).toThrow(ValidationError);
  });

  it('holds a bridge-piece to a piece boundary, at most a batch (or one piece when asked so), inside the largest block', () => {
    const data = new Uint8Array(PIECE_SIZE);
    expect(parseBridgePieceOut({ stream: 1, offset: PIECE_SIZE, data: Buffer.from(data) })).toMatchObject({ stream: 1, offset: PIECE_SIZE });
    expect(parseBridgePieceOut({ stream: 1, offset: 0, data: new Uint8Array(5).buffer }).data.byteLength).toBe(5);
    expect(() => parseBridgePieceOut({ stream: 1, offset: 1000, data })).toThrow(/multiple of 65536/);
    expect(parseBridgePieceOut({ stream: 1, offset: 0, data: new Uint8Array(MAX_BRIDGE_BATCH_BYTES) }).data.byteLength).toBe(MAX_BRIDGE_BATCH_BYTES);
    expect(() => parseBridgePieceOut({ stream: 1, offset: 0, data: new Uint8Array(MAX_BRIDGE_BATCH_BYTES + 1) })).toThrow(ValidationError);
    expect(() => parseBridgePieceOut({ stream: 1, offset: 0, data: new Uint8Array(PIECE_SIZE + 1) }, PIECE_SIZE)).toThrow(ValidationError);
    expect(() => parseBridgePieceOut({ stream: 1, offset: MAX_BLOCK_SIZE - PIECE_SIZE, data: new Uint8Array(2 * PIECE_SIZE) })).toThrow(/within the largest block/);
    expect(() => parseBridgePieceOut({ stream: 1, offset: 0, data: new Uint8Array(0) })).toThrow(/empty/);
    expect(() => parseBridgePieceOut({ stream: 1, offset: MAX_BLOCK_SIZE, data })).toThrow(ValidationError);
    expect(() => parseBridgePieceOut({ stream: 0, offset: 0, data })).toThrow(ValidationError);
    expect(() => parseBridgePieceOut({ stream: 1, offset: 0, data, more: 1 })).toThrow(ValidationError);
    expect(parseBridgePieceAck({ ok: false })).toEqual({ ok: false });
    expect(() => parseBridgePieceAck({ ok: 'yes' })).toThrow(ValidationError);
  });

  it('reads a streamed fetch verdict: a size, or a failure with a known code', () => {
    expect(parseBridgeStreamReply({ ok: true, size: 42 })).toEqual({ ok: true, size: 42 });
    expect(parseBridgeStreamReply({ ok: false, code: 'bad_block', message: 'lied' })).toMatchObject({ ok: false, code: 'bad_block' });
    expect(() => parseBridgeStreamReply({ ok: true, size: 0 })).toThrow(ValidationError);
    expect(() => parseBridgeStreamReply({ ok: true, size: MAX_BLOCK_SIZE + 1 })).toThrow(ValidationError);
    expect(() => parseBridgeStreamReply({ ok: true, data: new Uint8Array(3) })).toThrow(ValidationError);
  });

  it('reads a fetch reply from a Buffer or an ArrayBuffer, and a failure only with a known code', () => {
    const bytes = new Uint8Array([1, 2, 3]);
    const fromBuffer = parseBridgeFetchReply({ ok: true, data: Buffer.from(bytes) });
    expect(fromBuffer.ok && [...fromBuffer.data]).toEqual([1, 2, 3]);
    const fromArrayBuffer = parseBridgeFetchReply({ ok: true, data: bytes.slice().buffer });
    expect(fromArrayBuffer.ok && [...fromArrayBuffer.data]).toEqual([1, 2, 3]);
    expect(parseBridgeFetchReply({ ok: false, code: 'busy', message: 'later' })).toEqual({ ok: false, code: 'busy', message: 'later' });
    expect(() => parseBridgeFetchReply({ ok: false, code: 'teapot', message: 'x' })).toThrow(ValidationError);
    expect(() => parseBridgeFetchReply({ ok: true, data: 'AQID' })).toThrow(ValidationError);
    expect(() => parseBridgeFetchReply({ ok: true, data: new Uint8Array(MAX_BLOCK_SIZE + 1) })).toThrow(ValidationError);
    expect(() => parseBridgeFetchReply({ ok: 1, data: bytes })).toThrow(ValidationError);
  });

  it('bounds a bridge-read to one piece inside one block', () => {
    expect(parseBridgeReadOut({ ns: NS, hash: HASH, offset: 0, length: MAX_BRIDGE_READ_BYTES })).toMatchObject({ offset: 0 });
    expect(() => parseBridgeReadOut({ ns: NS, hash: HASH, offset: 0, length: MAX_BRIDGE_READ_BYTES + 1 })).toThrow(ValidationError);
    expect(() => parseBridgeReadOut({ ns: NS, hash: HASH, offset: MAX_BLOCK_SIZE, length: 1 })).toThrow(ValidationError);
    expect(() => parseBridgeReadOut({ ns: NS, hash: HASH, offset: -1, length: 1 })).toThrow(ValidationError);
    expect(() => parseBridgeReadOut({ ns: NS, hash: HASH, offset: 0, length: 0 })).toThrow(ValidationError);
  });

  it('holds a bridge-read reply to the bytes asked for: fewer only at the end of the block', () => {
    const asked = { ns: NS, hash: HASH, offset: 100, length: 50 };
    expect(parseBridgeReadReply({ ok: true, data: new Uint8Array(50), size: 1000 }, asked).ok).toBe(true);
    expect(parseBridgeReadReply({ ok: true, data: new Uint8Array(20), size: 120 }, asked).ok).toBe(true);
    expect(() => parseBridgeReadReply({ ok: true, data: new Uint8Array(20), size: 1000 }, asked)).toThrow(/bytes asked for/);
    expect(() => parseBridgeReadReply({ ok: true, data: new Uint8Array(60), size: 1000 }, asked)).toThrow(ValidationError);
    expect(() => parseBridgeReadReply({ ok: true, data: new Uint8Array(1), size: 100 }, asked)).toThrow(/past the offset/);
    expect(parseBridgeReadReply({ ok: false, code: 'not_found', message: 'no' }, asked).ok).toBe(false);
  });
});

describe('BridgedBlockSource', () => {
  const want = (sjid: number, ns = NS, hash = HASH, sizeHint = 4) => ({ ns, hash, sjid, sizeHint });
  /** A bridge that streams `block` in pieces, then gives `verdict` (the size it vouches for, or an error). */
  const streaming =
    (block: Uint8Array, verdict: number | Error = block.length, between?: (index: number) => Promise<void>): BridgeFetch =>
    async (_hash, sink) => {
      for (let at = 0, i = 0; at < block.length; at += PIECE_SIZE, i++) {
        await between?.(i);
        if (!sink(at, block.slice(at, at + PIECE_SIZE))) throw new Error('stopped');
      }
      if (verdict instanceof Error) throw verdict;
      return verdict;
    };

  it('claims what its advert covers in its namespace, and follows the advert', () => {
    const source = new BridgedBlockSource(PEER, NS, 5, async () => 4);
    expect(source.kind).toBe('peer');
    expect(source.canServe(want(5))).toBe(true);
    expect(source.canServe(want(6))).toBe(false);
    expect(source.canServe(want(1, OTHER_NS))).toBe(false);
    source.setCursor(6);
    expect(source.canServe(want(6))).toBe(true);
  });

  it('puts a streamed block together byte for byte, whatever its size hint', async () => {
    const block = blockOf(MAX_BLOCK_SIZE - 12_345, 3);
    for (const hint of [0, 1000, block.length, MAX_BLOCK_SIZE]) {
      const source = new BridgedBlockSource(PEER, NS, 5, streaming(block));
      const bytes = await source.fetchBlock(want(1, NS, hashOf(block), hint), new AbortController().signal);
      expect(bytes.length).toBe(block.length);
      expect(hashOf(bytes)).toBe(hashOf(block));
    }
  });

  it('returns nothing when the bridge does not vouch for what it streamed (bad block, or a size that differs)', async () => {
    const block = blockOf(3 * PIECE_SIZE, 4);
    const refused = new BridgedBlockSource(PEER, NS, 5, streaming(block, new Error('bad_block')));
    await expect(refused.fetchBlock(want(1), new AbortController().signal)).rejects.toThrow('bad_block');
    const short = new BridgedBlockSource(PEER, NS, 5, streaming(block, block.length + 1));
    await expect(short.fetchBlock(want(1), new AbortController().signal)).rejects.toThrow(/vouched for/);
    expect(refused.bytesReceived + short.bytesReceived).toBe(0);
  });

  it('measures throughput from the blocks it fetched', async () => {
    let now = 0;
    const block = new Uint8Array(1000);
    const source = new BridgedBlockSource(PEER, NS, 5, streaming(block, block.length, async () => void (now += 100)), { now: () => now });
    expect(source.bytesPerSecond()).toBe(0);
    await source.fetchBlock(want(1), new AbortController().signal);
    expect(source.bytesPerSecond()).toBe(10_000);
    expect(source.bytesReceived).toBe(1000);
  });

  it('gives up at once when the scheduler aborts, and stops the stream at its next piece', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let stopped = false;
    const source = new BridgedBlockSource(PEER, NS, 5, async (_hash, sink) => {
      sink(0, new Uint8Array(PIECE_SIZE));
      await held;
      stopped = !sink(PIECE_SIZE, new Uint8Array(PIECE_SIZE));
      return 2 * PIECE_SIZE;
    });
    const controller = new AbortController();
    const fetching = source.fetchBlock(want(1), controller.signal);
    controller.abort(new Error('unwanted'));
    await expect(fetching).rejects.toThrow('unwanted');
    release();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(stopped).toBe(true);
  });

  it("hands a reader's tap each piece as it comes, usable once it matches the server's piece hash, before the verdict", async () => {
    const block = blockOf(4 * PIECE_SIZE, 5);
    const hash = hashOf(block);
    const taps = new PieceTaps(nodeSha256);
    const tap = taps.open(hash, block.length);
    tap.setPieces(piecesOf(block));
    let verdict!: (size: number) => void;
    const source = new BridgedBlockSource(PEER, NS, 5, async (_hash, sink) => {
      for (let at = 0; at < block.length; at += PIECE_SIZE) sink(at, block.slice(at, at + PIECE_SIZE));
      return new Promise<number>((resolve) => (verdict = resolve));
    }, { taps });
    const fetching = source.fetchBlock(want(1, NS, hash, block.length), new AbortController().signal);
    // The verdict has not come, yet the reader reads piece 2, checked against the server's hash.
    const piece = await tap.read(2 * PIECE_SIZE + 10, new AbortController().signal);
    expect(hashOf(piece)).toBe(hashOf(block.subarray(2 * PIECE_SIZE + 10, 3 * PIECE_SIZE)));
    verdict(block.length);
    expect(hashOf(await fetching)).toBe(hash);
  });

  it('aborts with PieceMismatchError (the scheduler penalises the peer) when a piece fails its trusted hash', async () => {
    const block = blockOf(4 * PIECE_SIZE, 6);
    const hash = hashOf(block);
    const lie = block.slice();
    lie[PIECE_SIZE + 1] ^= 1;
    const taps = new PieceTaps(nodeSha256);
    taps.open(hash, block.length).setPieces(piecesOf(block));
    const source = new BridgedBlockSource(PEER, NS, 5, streaming(lie, lie.length, () => new Promise((resolve) => setTimeout(resolve, 5))), { taps });
    await expect(source.fetchBlock(want(1, NS, hash, block.length), new AbortController().signal)).rejects.toBeInstanceOf(PieceMismatchError);
  });
});

function piecesOf(bytes: Uint8Array) {
  const pieces = [];
  for (let at = 0; at < bytes.length; at += PIECE_SIZE) pieces.push(hashOf(bytes.subarray(at, at + PIECE_SIZE)));
  return { hash: hashOf(bytes), size: bytes.length, pieces };
}

describe('PipelineThroughput', () => {
  it('times overlapping blocks from the end of the previous one', () => {
    const meter = new PipelineThroughput(1);
    meter.record(1000, 0, 100); // 10 kB/s
    meter.record(1000, 0, 150); // queued since 0, but the source spent 50 ms on it
    expect(meter.bytesPerSecond).toBe(20_000);
    expect(meter.blocks).toBe(2);
    expect(meter.bytes).toBe(2000);
  });
});

describe('BridgeReads', () => {
  async function setup(live: boolean) {
    const store = new MemoryBlockStore();
    const block = new Uint8Array(150_000).map((_, i) => i % 251);
    const hash = hashOf(block);
    await store.putBlock(hash, block);
    let reads = 0;
    const counting = { ...store, hasBlocks: store.hasBlocks.bind(store), putBlock: store.putBlock.bind(store), getBlock: (h: BlockHash) => (reads++, store.getBlock(h)) };
    return { reads: () => reads, hash, block, bridge: new BridgeReads(NS, counting, (h) => live && h === hash) };
  }

  it('serves a held live block in pieces, reading it from the store once', async () => {
    const { bridge, hash, block, reads } = await setup(true);
    const pieces: Uint8Array[] = [];
    for (let offset = 0; offset < block.length; offset += MAX_BRIDGE_READ_BYTES) {
      const reply = await bridge.read({ ns: NS, hash, offset, length: MAX_BRIDGE_READ_BYTES });
      if (!reply.ok) throw new Error(reply.message);
      expect(reply.size).toBe(block.length);
      pieces.push(reply.data);
    }
    expect(Buffer.concat(pieces).equals(Buffer.from(block))).toBe(true);
    expect(reads()).toBe(1);
  });

  it('refuses a block that is not live here, another namespace, and an offset past the end', async () => {
    const notLive = await setup(false);
    expect(await notLive.bridge.read({ ns: NS, hash: notLive.hash, offset: 0, length: 10 })).toMatchObject({ ok: false, code: 'not_found' });
    const live = await setup(true);
    expect(await live.bridge.read({ ns: OTHER_NS, hash: live.hash, offset: 0, length: 10 })).toMatchObject({ ok: false, code: 'not_found' });
    expect(await live.bridge.read({ ns: NS, hash: live.hash, offset: 150_000, length: 10 })).toMatchObject({ ok: false, code: 'invalid' });
  });
});
