import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_BLOCK_SIZE, MAX_BRIDGE_BATCH_BYTES, PIECE_SIZE, pieceCount, type BlockHash, type BlockPieces } from '../../src/protocol/index.ts';
import { BATCHED_PIECES, PieceRelay, PieceRelayError, SINGLE_PIECES, type PiecePacing } from '../../src/server/lan-bridge/piece-relay.ts';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex') as BlockHash;
/** What a LAN link hands over: DATA payloads of at most 262,134 bytes, in order. */
const LAN_CHUNK = 262_134;

function piecesOf(block: Uint8Array): BlockPieces {
  const pieces: BlockHash[] = [];
  for (let at = 0; at < block.length; at += PIECE_SIZE) pieces.push(sha256(block.subarray(at, at + PIECE_SIZE)));
  return { hash: sha256(block), size: block.length, pieces };
}

/** A browser that acknowledges each piece when told to (`ackAll`), recording what it got. */
function slowBrowser() {
  const got: Array<{ offset: number; bytes: Uint8Array }> = [];
  const pending: Array<(more: boolean) => void> = [];
  return {
    got,
    pending,
    send: (offset: number, bytes: Uint8Array) => {
      got.push({ offset, bytes: new Uint8Array(bytes) });
      return new Promise<boolean>((resolve) => pending.push(resolve));
    },
    ackAll(more = true) {
      for (const ack of pending.splice(0)) ack(more);
    },
  };
}

function feed(relay: PieceRelay, block: Uint8Array, upTo = block.length): void {
  for (let at = 0; at < upTo; at += LAN_CHUNK) {
    // The link reuses nothing, but a relay must not depend on that: hand it a copy that is scribbled over after.
    const chunk = new Uint8Array(block.subarray(at, Math.min(upTo, at + LAN_CHUNK)));
    relay.take(at, chunk);
    chunk.fill(0);
  }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
/** One piece per event, `pieces` of them unacknowledged at most. */
const single = (pieces: number): PiecePacing => ({ eventBytes: PIECE_SIZE, windowBytes: pieces * PIECE_SIZE });

describe('PieceRelay (a streamed bridge fetch, server side)', () => {
  it('cuts LAN chunks into 64 KiB pieces, byte-exact and in order, and keeps at most `window` unacknowledged', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE - 1000));
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, single(4), null);
    feed(relay, block);
    const verdict = relay.finish(block.length);
    // The browser has not acknowledged anything: only the window went out, the rest waits.
    expect(browser.got.length).toBe(4);
    while (browser.pending.length > 0) {
      browser.ackAll();
      await tick();
      expect(browser.pending.length).toBeLessThanOrEqual(4);
    }
    expect(await verdict).toBe(true);
    expect(browser.got.map((p) => p.offset)).toEqual(Array.from({ length: pieceCount(block.length) }, (_, i) => i * PIECE_SIZE));
    expect(browser.got.slice(0, -1).every((p) => p.bytes.length === PIECE_SIZE)).toBe(true);
    expect(Buffer.concat(browser.got.map((p) => p.bytes)).equals(block)).toBe(true);
    expect(relay.acknowledged).toBe(block.length);
  });

  it('without piece hashes, forwards the pieces and says at the end that the whole block does not match', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE));
    const lie = new Uint8Array(block);
    lie[3 * PIECE_SIZE + 5] ^= 1;
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, single(64), null);
    feed(relay, lie);
    expect(await relay.finish(lie.length)).toBe(false);
  });

  it('a truncated block (fewer bytes than its name covers) fails the verdict', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE));
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, single(64), null);
    feed(relay, block, 2 * MAX_BLOCK_SIZE / 4);
    expect(await relay.finish(2 * MAX_BLOCK_SIZE / 4)).toBe(false);
  });

  it('with trusted piece hashes, stops at the first bad piece before it leaves, and aborts the LAN request', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE));
    const lie = new Uint8Array(block);
    lie[5 * PIECE_SIZE] ^= 0xff;
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, single(64), piecesOf(block));
    feed(relay, lie);
    await tick();
    expect(relay.signal.aborted).toBe(true);
    expect(relay.signal.reason).toBeInstanceOf(PieceRelayError);
    expect((relay.signal.reason as PieceRelayError).reason).toBe('bad_piece');
    // Only pieces before it went out (the LAN chunk that held the bad one sent nothing); the bad one and everything after it did not.
    const sent = browser.got.map((p) => p.offset / PIECE_SIZE);
    expect(sent).toEqual(Array.from({ length: sent.length }, (_, i) => i));
    expect(sent.length).toBeLessThanOrEqual(5);
    await expect(relay.finish(lie.length)).rejects.toMatchObject({ reason: 'bad_piece' });
  });

  it('with trusted piece hashes, refuses a block longer or shorter than the server knows it', async () => {
    const block = new Uint8Array(randomBytes(3 * PIECE_SIZE + 7));
    const longer = new Uint8Array(randomBytes(block.length + PIECE_SIZE));
    longer.set(block);
    const relay = new PieceRelay(sha256(block), slowBrowser().send, single(64), piecesOf(block));
    feed(relay, longer);
    await expect(relay.finish(longer.length)).rejects.toMatchObject({ reason: 'bad_piece' });
    const shorter = new PieceRelay(sha256(block), slowBrowser().send, single(64), piecesOf(block));
    feed(shorter, block, 2 * PIECE_SIZE + 1);
    await expect(shorter.finish(2 * PIECE_SIZE + 1)).rejects.toMatchObject({ reason: 'bad_piece' });
  });

  it('stops when the browser says stop or a piece cannot reach it', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE));
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, single(2), null);
    feed(relay, block);
    const verdict = relay.finish(block.length);
    browser.ackAll(false);
    await expect(verdict).rejects.toMatchObject({ reason: 'stopped' });
    await tick();
    expect(relay.signal.aborted).toBe(true);
    expect(browser.got.length).toBe(2);

    const failing = new PieceRelay(sha256(block), () => Promise.reject(new Error('operation has timed out')), single(2), null);
    feed(failing, block);
    await expect(failing.finish(block.length)).rejects.toThrow(/did not reach the browser: operation has timed out/);
  });

  it('batched: an event carries the whole pieces waiting (up to 1 MiB), within a window of bytes, byte-exact', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE - 1000));
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, BATCHED_PIECES, null);
    feed(relay, block);
    const verdict = relay.finish(block.length);
    // Nothing acknowledged: the window (2 MiB) went out as events of at most 1 MiB, each whole pieces.
    const inFlight = () => browser.got.slice(browser.got.length - browser.pending.length).reduce((n, p) => n + p.bytes.length, 0);
    expect(inFlight()).toBeLessThanOrEqual(BATCHED_PIECES.windowBytes);
    while (browser.pending.length > 0) {
      browser.ackAll();
      await tick();
      expect(inFlight()).toBeLessThanOrEqual(BATCHED_PIECES.windowBytes);
    }
    expect(await verdict).toBe(true);
    expect(browser.got.every((p) => p.offset % PIECE_SIZE === 0 && p.bytes.length <= BATCHED_PIECES.eventBytes)).toBe(true);
    expect(browser.got.slice(0, -1).every((p) => p.bytes.length % PIECE_SIZE === 0)).toBe(true);
    // Fewer events than pieces: a lagging browser gets batches.
    expect(browser.got.length).toBeLessThan(pieceCount(block.length) / 4);
    expect(Buffer.concat(browser.got.map((p) => p.bytes)).equals(block)).toBe(true);
    expect(relay.acknowledged).toBe(block.length);
  });

  it('batched: what a browser that keeps up is owed goes at once; behind an unacknowledged event, pieces gather into a batch', async () => {
    const block = new Uint8Array(randomBytes(3 * MAX_BRIDGE_BATCH_BYTES + 10));
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, BATCHED_PIECES, null);
    const shape = () => browser.got.map((p) => [p.offset / PIECE_SIZE, p.bytes.length / PIECE_SIZE]);
    relay.take(0, block.subarray(0, PIECE_SIZE));
    expect(shape()).toEqual([[0, 1]]); // the first piece: at once
    browser.ackAll();
    await tick();
    relay.take(PIECE_SIZE, block.subarray(PIECE_SIZE, 2 * PIECE_SIZE));
    expect(shape()).toEqual([[0, 1], [1, 1]]); // nothing in flight: at once
    // Piece 1 unacknowledged: pieces 2-15 wait until they fill the first MiB, then go as one event.
    for (let i = 2; i < 16; i++) {
      expect(shape().length).toBe(2);
      relay.take(i * PIECE_SIZE, block.subarray(i * PIECE_SIZE, (i + 1) * PIECE_SIZE));
    }
    expect(shape()).toEqual([[0, 1], [1, 1], [2, 14]]);
    relay.take(16 * PIECE_SIZE, block.subarray(16 * PIECE_SIZE, 20 * PIECE_SIZE));
    expect(shape().length).toBe(3);
    browser.ackAll(); // the acks send what waited
    await tick();
    expect(shape()).toEqual([[0, 1], [1, 1], [2, 14], [16, 4]]);
    relay.take(20 * PIECE_SIZE, block.subarray(20 * PIECE_SIZE));
    const verdict = relay.finish(block.length);
    while (browser.pending.length > 0) {
      browser.ackAll();
      await tick();
    }
    expect(await verdict).toBe(true);
    expect(Buffer.concat(browser.got.map((p) => p.bytes)).equals(block)).toBe(true);
  });

  it('batched, with trusted piece hashes: a bad piece never joins an event, and the good ones before it are the only ones out', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE));
    const lie = new Uint8Array(block);
    lie[9 * PIECE_SIZE + 3] ^= 0xff;
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, BATCHED_PIECES, piecesOf(block));
    feed(relay, lie);
    await tick();
    expect((relay.signal.reason as PieceRelayError).reason).toBe('bad_piece');
    const out = Buffer.concat(browser.got.map((p) => p.bytes));
    expect(out.length).toBeLessThanOrEqual(9 * PIECE_SIZE);
    expect(out.equals(Buffer.from(block.subarray(0, out.length)))).toBe(true);
    await expect(relay.finish(lie.length)).rejects.toMatchObject({ reason: 'bad_piece' });
  });

  it('single pieces (a page that did not ask for batches) keep one piece per event', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE));
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, SINGLE_PIECES, null);
    feed(relay, block);
    const verdict = relay.finish(block.length);
    expect(browser.got.length).toBe(SINGLE_PIECES.windowBytes / PIECE_SIZE);
    while (browser.pending.length > 0) {
      browser.ackAll();
      await tick();
    }
    expect(await verdict).toBe(true);
    expect(browser.got.length).toBe(pieceCount(block.length));
  });
});
