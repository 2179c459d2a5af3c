import { createHash, type Hash } from 'node:crypto';
import {
  BRIDGE_BATCH_WINDOW_BYTES,
  BRIDGE_PIECE_WINDOW,
  MAX_BRIDGE_BATCH_BYTES,
  PIECE_SIZE,
  hexOfDigest,
  type BlockHash,
  type BlockPieces,
} from '../../protocol/index.ts';

/**
 * Sends whole pieces `[offset, offset + bytes.length)` of the block to the browser as one
 * event; resolves with its ack (`false`: the browser gave up), rejects when it cannot.
 */
export type SendPiece = (offset: number, bytes: Uint8Array) => Promise<boolean>;

/** How a stream goes out: the most bytes one event carries, and the most unacknowledged. */
export interface PiecePacing {
  eventBytes: number;
  windowBytes: number;
}

/** A socket that did not ask for batches (an older page): one piece per event, 16 ahead, as before. */
export const SINGLE_PIECES: PiecePacing = { eventBytes: PIECE_SIZE, windowBytes: BRIDGE_PIECE_WINDOW * PIECE_SIZE };
/** A socket that asked for batches: whatever whole pieces are waiting, up to 1 MiB an event, 2 MiB ahead. */
export const BATCHED_PIECES: PiecePacing = { eventBytes: MAX_BRIDGE_BATCH_BYTES, windowBytes: BRIDGE_BATCH_WINDOW_BYTES };

/** Why a relayed stream stopped before its verdict. */
export class PieceRelayError extends Error {
  override readonly name = 'PieceRelayError';
  constructor(
    /** `bad_piece`: failed a trusted piece hash (the LAN peer lied); `stopped`: the browser gave up or went away. */
    readonly reason: 'bad_piece' | 'stopped',
    message: string,
  ) {
    super(message);
  }
}

/**
 * One streamed bridge fetch (docs/protocol.md "Streamed bridge fetches"): bytes of a block
 * arrive from the LAN peer in chunks of any size, in order; they are cut into PIECE_SIZE
 * pieces (copies, so nothing aliases the link's buffers), each checked and hashed on its own,
 * and leave for the browser as events of whole pieces, at most `pacing.windowBytes`
 * unacknowledged. An event carries every checked piece waiting when the window opens (up to
 * `pacing.eventBytes`), so a browser that keeps up gets small events at once and one that
 * lags gets fewer, larger ones: the per-event cost (a socket.io event, its frames and its ack)
 * is paid per batch, not per piece. The whole block is hashed as it passes, so the verdict
 * costs no second pass; when the server knows the block's piece hashes (trusted: it checked
 * the block itself), each piece is checked before it can join an event and a bad one stops
 * the stream at once.
 *
 * Pieces are cut into arenas of `eventBytes`, so consecutive pieces sit side by side and an
 * event is a view of them, not another copy.
 *
 * Memory: the pieces waiting for the browser are at most one block (4 MiB), whatever the
 * browser's pace; the LAN side is one request of one block.
 */
export class PieceRelay {
  private readonly whole: Hash = createHash('sha256');
  private readonly arenaBytes: number;
  private arena: Uint8Array;
  /** Bytes of `arena` holding cut pieces; the piece being filled starts here. */
  private arenaUsed = 0;
  private partialLength = 0;
  /** Bytes cut into pieces so far (the next piece's offset). */
  private cut = 0;
  /** Checked pieces waiting for the window, in order (views into arenas). */
  private readonly queue: Array<{ offset: number; bytes: Uint8Array }> = [];
  private unackedBytes = 0;
  /** Events sent and not yet acknowledged. */
  private inFlight = 0;
  /** The LAN answer ended: every piece is cut, nothing more will join a batch. */
  private finishing = false;
  private failure: PieceRelayError | Error | null = null;
  private drained: (() => void) | null = null;
  private readonly failed = new AbortController();

  constructor(
    private readonly hash: BlockHash,
    private readonly send: SendPiece,
    private readonly pacing: PiecePacing,
    private readonly trusted: BlockPieces | null,
  ) {
    this.arenaBytes = Math.max(PIECE_SIZE, pacing.eventBytes - (pacing.eventBytes % PIECE_SIZE));
    this.arena = new Uint8Array(this.arenaBytes);
  }

  /** Aborted when the stream cannot go on (a bad piece, or the browser stopped): the LAN request is to be cancelled. */
  get signal(): AbortSignal {
    return this.failed.signal;
  }

  /** Pieces handed to the browser and acknowledged, in bytes. */
  acknowledged = 0;

  /** Bytes `[offset, offset + bytes.length)` of the block from the LAN link (contiguous, in order). */
  take(offset: number, bytes: Uint8Array): void {
    if (this.failure || offset !== this.cut + this.partialLength) return;
    let at = 0;
    while (at < bytes.length && !this.failure) {
      if (this.arenaUsed === this.arenaBytes) {
        // Full (and no piece half-cut, the arena being whole pieces): the next pieces start a new one.
        this.arena = new Uint8Array(this.arenaBytes);
        this.arenaUsed = 0;
      }
      const n = Math.min(PIECE_SIZE - this.partialLength, bytes.length - at);
      this.arena.set(bytes.subarray(at, at + n), this.arenaUsed + this.partialLength);
      this.partialLength += n;
      at += n;
      if (this.partialLength === PIECE_SIZE) this.closePiece();
    }
    // Once per chunk, not per piece: the pieces of one LAN chunk can leave as one event.
    this.pump();
  }

  /**
   * The LAN peer's answer ended with `total` bytes: the last piece goes, and the block's hash
   * decides. Resolves true once every piece is acknowledged and the block matched; false when
   * the whole does not hash to its name (nothing more is sent). Rejects with the failure that
   * stopped the stream.
   */
  async finish(total: number): Promise<boolean> {
    if (this.failure) throw this.failure;
    this.finishing = true;
    if (this.partialLength > 0) this.closePiece();
    if (this.failure) throw this.failure;
    if (this.cut !== total || hexOfDigest(this.whole.digest()) !== this.hash) {
      this.queue.length = 0;
      return false;
    }
    this.pump();
    if (this.inFlight > 0 || this.queue.length > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    if (this.failure) throw this.failure;
    return true;
  }

  private closePiece(): void {
    const bytes = this.arena.subarray(this.arenaUsed, this.arenaUsed + this.partialLength);
    const index = this.cut / PIECE_SIZE;
    if (this.trusted) {
      const expected = this.trusted.pieces[index];
      const digest = expected === undefined ? null : hexOfDigest(createHash('sha256').update(bytes).digest());
      if (digest !== expected) return this.fail(new PieceRelayError('bad_piece', `piece ${index} of block ${this.hash.slice(0, 12)}… does not match its hash`));
    }
    this.whole.update(bytes);
    this.queue.push({ offset: this.cut, bytes });
    this.cut += this.partialLength;
    this.arenaUsed += this.partialLength;
    this.partialLength = 0;
  }

  /**
   * Sends what the window allows, each event the longest run of waiting pieces that fits. While
   * an event of this stream is in flight, a run that does not yet fill its arena waits for
   * more (its ack, or the next LAN chunk, sends it): a browser that lags gets full batches,
   * one that keeps up, or the first bytes of a block, go at once.
   */
  private pump(): void {
    const { eventBytes, windowBytes } = this.pacing;
    while (!this.failure && this.unackedBytes < windowBytes && this.queue.length > 0) {
      const first = this.queue[0]!;
      let count = 1;
      let length = first.bytes.length;
      for (;;) {
        const next = this.queue[count];
        if (!next || next.bytes.buffer !== first.bytes.buffer || next.bytes.byteOffset !== first.bytes.byteOffset + length) break;
        if (length + next.bytes.length > eventBytes || this.unackedBytes + length + next.bytes.length > windowBytes) break;
        length += next.bytes.length;
        count += 1;
      }
      const fillsArena = first.bytes.byteOffset + length === this.arenaBytes;
      if (this.inFlight > 0 && !this.finishing && !fillsArena) return;
      this.queue.splice(0, count);
      const event = new Uint8Array(first.bytes.buffer, first.bytes.byteOffset, length);
      this.unackedBytes += length;
      this.inFlight += 1;
      this.send(first.offset, event).then(
        (more) => {
          this.unackedBytes -= length;
          this.inFlight -= 1;
          if (!more) return this.fail(new PieceRelayError('stopped', 'the browser stopped the stream'));
          this.acknowledged += length;
          this.pump();
          if (this.inFlight === 0 && this.queue.length === 0) this.drained?.();
        },
        (error: unknown) => {
          this.unackedBytes -= length;
          this.inFlight -= 1;
          this.fail(new PieceRelayError('stopped', `a piece did not reach the browser: ${error instanceof Error ? error.message : String(error)}`));
        },
      );
    }
  }

  private fail(error: PieceRelayError): void {
    if (this.failure) return;
    this.failure = error;
    this.queue.length = 0;
    // Not from inside the link's chunk callback: the cancel it causes runs once that returned.
    queueMicrotask(() => this.failed.abort(error));
    this.drained?.();
  }
}
