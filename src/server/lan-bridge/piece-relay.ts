import { createHash, type Hash } from 'node:crypto';
import { PIECE_SIZE, hexOfDigest, type BlockHash, type BlockPieces } from '../../protocol/index.ts';

/** Sends one piece to the browser; resolves with its ack (`false`: the browser gave up), rejects when it cannot. */
export type SendPiece = (offset: number, bytes: Uint8Array) => Promise<boolean>;

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
 * arrive from the LAN peer in chunks of any size, in order; they leave for the browser as
 * PIECE_SIZE pieces (copies, so nothing aliases the link's buffers), at most `window` of them
 * unacknowledged. The whole block is hashed as it passes, so the verdict costs no second
 * pass; when the server knows the block's piece hashes (trusted: it checked the block itself),
 * each piece is checked before it leaves and a bad one stops the stream at once.
 *
 * Memory: the pieces waiting for the browser are at most one block (4 MiB), whatever the
 * browser's pace; the LAN side is one request of one block.
 */
export class PieceRelay {
  private readonly whole: Hash = createHash('sha256');
  private partial: Uint8Array = new Uint8Array(PIECE_SIZE);
  private partialLength = 0;
  /** Bytes cut into pieces so far (the next piece's offset). */
  private cut = 0;
  private readonly queue: Array<{ offset: number; bytes: Uint8Array }> = [];
  private unacked = 0;
  private failure: PieceRelayError | Error | null = null;
  private drained: (() => void) | null = null;
  private readonly failed = new AbortController();

  constructor(
    private readonly hash: BlockHash,
    private readonly send: SendPiece,
    private readonly window: number,
    private readonly trusted: BlockPieces | null,
  ) {}

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
      const n = Math.min(PIECE_SIZE - this.partialLength, bytes.length - at);
      this.partial.set(bytes.subarray(at, at + n), this.partialLength);
      this.partialLength += n;
      at += n;
      if (this.partialLength === PIECE_SIZE) this.closePiece();
    }
  }

  /**
   * The LAN peer's answer ended with `total` bytes: the last piece goes, and the block's hash
   * decides. Resolves true once every piece is acknowledged and the block matched; false when
   * the whole does not hash to its name (nothing more is sent). Rejects with the failure that
   * stopped the stream.
   */
  async finish(total: number): Promise<boolean> {
    if (this.failure) throw this.failure;
    if (this.partialLength > 0) this.closePiece();
    if (this.failure) throw this.failure;
    if (this.cut !== total || hexOfDigest(this.whole.digest()) !== this.hash) {
      this.queue.length = 0;
      return false;
    }
    if (this.unacked > 0 || this.queue.length > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    if (this.failure) throw this.failure;
    return true;
  }

  private closePiece(): void {
    const bytes = this.partial.subarray(0, this.partialLength);
    const index = this.cut / PIECE_SIZE;
    if (this.trusted) {
      const expected = this.trusted.pieces[index];
      const digest = expected === undefined ? null : hexOfDigest(createHash('sha256').update(bytes).digest());
      if (digest !== expected) return this.fail(new PieceRelayError('bad_piece', `piece ${index} of block ${this.hash.slice(0, 12)}… does not match its hash`));
    }
    this.whole.update(bytes);
    this.queue.push({ offset: this.cut, bytes });
    this.cut += this.partialLength;
    this.partial = new Uint8Array(PIECE_SIZE);
    this.partialLength = 0;
    this.pump();
  }

  private pump(): void {
    while (!this.failure && this.unacked < this.window && this.queue.length > 0) {
      const piece = this.queue.shift()!;
      this.unacked += 1;
      this.send(piece.offset, piece.bytes).then(
        (more) => {
          this.unacked -= 1;
          if (!more) return this.fail(new PieceRelayError('stopped', 'the browser stopped the stream'));
          this.acknowledged += piece.bytes.length;
          this.pump();
          if (this.unacked === 0 && this.queue.length === 0) this.drained?.();
        },
        (error: unknown) => {
          this.unacked -= 1;
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
