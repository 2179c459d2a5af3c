import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_BLOCK_SIZE, PIECE_SIZE, pieceCount, type BlockHash, type BlockPieces } from '../../src/protocol/index.ts';
import { PieceRelay, PieceRelayError } from '../../src/server/lan-bridge/piece-relay.ts';

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

describe('PieceRelay (a streamed bridge fetch, server side)', () => {
  it('cuts LAN chunks into 64 KiB pieces, byte-exact and in order, and keeps at most `window` unacknowledged', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE - 1000));
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, 4, null);
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
    const relay = new PieceRelay(sha256(block), browser.send, 64, null);
    feed(relay, lie);
    expect(await relay.finish(lie.length)).toBe(false);
  });

  it('a truncated block (fewer bytes than its name covers) fails the verdict', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE));
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, 64, null);
    feed(relay, block, 2 * MAX_BLOCK_SIZE / 4);
    expect(await relay.finish(2 * MAX_BLOCK_SIZE / 4)).toBe(false);
  });

  it('with trusted piece hashes, stops at the first bad piece before it leaves, and aborts the LAN request', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE));
    const lie = new Uint8Array(block);
    lie[5 * PIECE_SIZE] ^= 0xff;
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, 64, piecesOf(block));
    feed(relay, lie);
    await tick();
    expect(relay.signal.aborted).toBe(true);
    expect(relay.signal.reason).toBeInstanceOf(PieceRelayError);
    expect((relay.signal.reason as PieceRelayError).reason).toBe('bad_piece');
    // Pieces 0-4 went out (they matched); the bad one and everything after it did not.
    expect(browser.got.map((p) => p.offset / PIECE_SIZE)).toEqual([0, 1, 2, 3, 4]);
    await expect(relay.finish(lie.length)).rejects.toMatchObject({ reason: 'bad_piece' });
  });

  it('with trusted piece hashes, refuses a block longer or shorter than the server knows it', async () => {
    const block = new Uint8Array(randomBytes(3 * PIECE_SIZE + 7));
    const longer = new Uint8Array(randomBytes(block.length + PIECE_SIZE));
    longer.set(block);
    const relay = new PieceRelay(sha256(block), slowBrowser().send, 64, piecesOf(block));
    feed(relay, longer);
    await expect(relay.finish(longer.length)).rejects.toMatchObject({ reason: 'bad_piece' });
    const shorter = new PieceRelay(sha256(block), slowBrowser().send, 64, piecesOf(block));
    feed(shorter, block, 2 * PIECE_SIZE + 1);
    await expect(shorter.finish(2 * PIECE_SIZE + 1)).rejects.toMatchObject({ reason: 'bad_piece' });
  });

  it('stops when the browser says stop or a piece cannot reach it', async () => {
    const block = new Uint8Array(randomBytes(MAX_BLOCK_SIZE));
    const browser = slowBrowser();
    const relay = new PieceRelay(sha256(block), browser.send, 2, null);
    feed(relay, block);
    const verdict = relay.finish(block.length);
    browser.ackAll(false);
    await expect(verdict).rejects.toMatchObject({ reason: 'stopped' });
    await tick();
    expect(relay.signal.aborted).toBe(true);
    expect(browser.got.length).toBe(2);

    const failing = new PieceRelay(sha256(block), () => Promise.reject(new Error('operation has timed out')), 2, null);
    feed(failing, block);
    await expect(failing.finish(block.length)).rejects.toThrow(/did not reach the browser: operation has timed out/);
  });
});
