import { MAX_BLOCK_SIZE, PIECE_SIZE, pieceCount, type BlockHash, type BlockPieces } from '../protocol/index.ts';
import type { Sha256 } from './types.ts';

/**
 * Bytes from a peer failed their piece hash (from the server): the peer lied or broke, and
 * is penalised like a peer whose whole block does not match (the scheduler checks for this).
 */
export class PieceMismatchError extends Error {
  override readonly name = 'PieceMismatchError';
  constructor(
    readonly hash: BlockHash,
    readonly piece: number,
  ) {
    super(`piece ${piece} of block ${hash.slice(0, 12)}… does not match its hash`);
  }
}

/** Called with the reason when a feed's bytes proved bad: the feeding request is aborted. */
export type BadFeed = (error: PieceMismatchError) => void;

/**
 * A block a reader wants before all of it has arrived. A peer fetch of the block feeds the
 * bytes it receives (`feed`, in order, as the link takes them); each complete piece is copied
 * out and hashed against the server's piece list, and only matching pieces become readable
 * (`read`). Verified pieces stay valid whatever happens to the fetch that brought them (the
 * hash is the server's), so a refetch elsewhere only adds pieces. The whole block is still
 * checked against its own hash before it is stored: this is an early, partial view of it.
 */
export class PieceTap {
  private pieces: BlockPieces | null = null;
  private readonly verified = new Map<number, Uint8Array>();
  private readonly waiters = new Map<number, Array<(bytes: Uint8Array) => void>>();
  /** The fetch feeding now: bytes land in `buffer` at their block offset. */
  private feeder: object | null = null;
  private onBad: BadFeed | null = null;
  private buffer: Uint8Array | null = null;
  private received = 0;
  /** First piece of the current feed not yet handed to the hash. */
  private nextPiece = 0;
  refs = 0;

  constructor(
    readonly hash: BlockHash,
    private readonly sizeHint: number,
    private readonly sha256: Sha256,
  ) {}

  get hasPieces(): boolean {
    return this.pieces !== null;
  }

  /** The server's piece list arrived (validated, for this block): pieces already in are checked now. */
  setPieces(pieces: BlockPieces): void {
    if (this.pieces || pieces.hash !== this.hash) return;
    this.pieces = pieces;
    this.checkPieces();
  }

  /**
   * Bytes `[offset, offset + bytes.length)` of the block, from the fetch `feeder` (one object
   * per request), in the order the link accepted them: contiguous, except one wrap to 0 of
   * an answer that began at a reader's offset. A new feeder starts over, at the first piece
   * boundary at or after its first offset (a tap opened while a fetch was under way picks it up
   * from there). Bytes are copied: the caller's buffer may be reused once this returns.
   */
  feed(feeder: object, offset: number, bytes: Uint8Array, onBad: BadFeed): void {
    if (feeder !== this.feeder) {
      this.feeder = feeder;
      this.onBad = onBad;
      this.received = offset;
      this.nextPiece = Math.ceil(offset / PIECE_SIZE);
    }
    if (offset === 0 && this.received > 0) {
      // An answer that began at a reader's offset (REQUEST_FROM) wrapped to the block's start.
      this.received = 0;
      this.nextPiece = 0;
    }
    if (offset !== this.received) return; // the link allows no gaps; never trust a skipped region
    const end = offset + bytes.length;
    this.buffer ??= new Uint8Array(this.pieces?.size ?? (this.sizeHint > 0 ? Math.min(this.sizeHint, MAX_BLOCK_SIZE) : MAX_BLOCK_SIZE));
    // Longer than the block: nothing past it can be a piece, and the whole-block hash refuses it.
    if (end > this.buffer.length) return;
    this.buffer.set(bytes, offset);
    this.received = end;
    this.checkPieces();
  }

  /**
   * Verified bytes from `offset` (in the block) to the end of its piece, once that piece has
   * been checked. Rejects with the signal's reason on abort.
   */
  read(offset: number, signal: AbortSignal): Promise<Uint8Array> {
    const index = Math.floor(offset / PIECE_SIZE);
    const within = offset - index * PIECE_SIZE;
    const ready = this.verified.get(index);
    if (ready) return Promise.resolve(ready.subarray(within));
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(index) ?? [];
      const waiter = (bytes: Uint8Array) => {
        signal.removeEventListener('abort', onAbort);
        resolve(bytes.subarray(within));
      };
      const onAbort = () => {
        const left = (this.waiters.get(index) ?? []).filter((w) => w !== waiter);
        if (left.length > 0) this.waiters.set(index, left);
        else this.waiters.delete(index);
        reject(signal.reason);
      };
      list.push(waiter);
      this.waiters.set(index, list);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Hands every complete, unchecked piece of the current feed to the hash. */
  private checkPieces(): void {
    const pieces = this.pieces;
    if (!pieces || !this.buffer || !this.feeder) return;
    const count = pieceCount(pieces.size);
    while (this.nextPiece < count) {
      const index = this.nextPiece;
      const start = index * PIECE_SIZE;
      const end = Math.min(pieces.size, start + PIECE_SIZE);
      if (this.received < end || end > this.buffer.length) return;
      this.nextPiece += 1;
      if (this.verified.has(index)) continue;
      const bytes = this.buffer.slice(start, end);
      const onBad = this.onBad!;
      void this.sha256(bytes).then(
        (actual) => {
          if (actual !== pieces.pieces[index]) return onBad(new PieceMismatchError(this.hash, index));
          if (this.verified.has(index)) return;
          this.verified.set(index, bytes);
          const waiting = this.waiters.get(index) ?? [];
          this.waiters.delete(index);
          for (const resolve of waiting) resolve(bytes);
        },
        () => {
          // Hashing failed here (our fault, not the peer's): the piece is simply not readable early.
        },
      );
    }
  }
}

/** What a peer fetch under way received so far (copies, as runs in arrival order), with what its feed needs. */
export interface InFlightBytes {
  feeder: object;
  onBad: BadFeed;
  runs: Array<{ offset: number; bytes: Uint8Array }>;
}

/**
 * The taps of one workspace, by block hash. Readers `open` one (counted) for as long as they
 * may read from it and `close` it after; peer fetches `feed` whichever exists.
 */
export class PieceTaps {
  private readonly taps = new Map<BlockHash, PieceTap>();
  /** Peer fetches under way, by block: what each received so far, for a tap opened late. */
  private readonly fetches = new Map<BlockHash, () => InFlightBytes>();

  constructor(private readonly sha256: Sha256) {}

  open(hash: BlockHash, sizeHint: number): PieceTap {
    let tap = this.taps.get(hash);
    if (!tap) {
      tap = new PieceTap(hash, sizeHint, this.sha256);
      this.taps.set(hash, tap);
      const fetch = this.fetches.get(hash)?.();
      for (const run of fetch?.runs ?? []) if (run.bytes.length > 0) tap.feed(fetch!.feeder, run.offset, run.bytes, fetch!.onBad);
    }
    tap.refs += 1;
    return tap;
  }

  /** A peer fetch of `hash` began; the returned function says it ended. */
  fetching(hash: BlockHash, soFar: () => InFlightBytes): () => void {
    this.fetches.set(hash, soFar);
    return () => {
      if (this.fetches.get(hash) === soFar) this.fetches.delete(hash);
    };
  }

  close(tap: PieceTap): void {
    tap.refs -= 1;
    if (tap.refs <= 0 && this.taps.get(tap.hash) === tap) this.taps.delete(tap.hash);
  }

  /** The tap of a block a reader is waiting for, if any (cheap: called for every DATA frame). */
  get(hash: BlockHash): PieceTap | undefined {
    return this.taps.get(hash);
  }
}
