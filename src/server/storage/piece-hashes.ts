import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { PIECE_SIZE, hexOfDigest, pieceCount, type BlockHash, type BlockPieces } from '../../protocol/index.ts';
import type { BlockStore } from './block-store.ts';

/** The stored bytes do not hash to the block's name: the store is corrupt, nothing is handed out. */
export class StoredBlockCorruptError extends Error {
  override readonly name = 'StoredBlockCorruptError';
  constructor(readonly hash: BlockHash) {
    super(`stored block ${hash} does not match its hash`);
  }
}

/**
 * Per-piece SHA-256 of stored blocks, computed from the block when first asked for and kept
 * in a bounded LRU (2 KiB per 4 MiB block: 4,096 blocks ≈ 8 MiB). Works the same over every
 * block store (files, S3): it only reads through `openRead`. The whole block is hashed in the
 * same pass and must match its name, so a piece list never vouches for corrupt bytes.
 * Concurrent asks for one block share one read.
 */
export class PieceHashes {
  private readonly cache = new Map<BlockHash, BlockPieces>();
  private readonly computing = new Map<BlockHash, Promise<BlockPieces | null>>();

  constructor(
    private readonly blocks: BlockStore,
    private readonly maxEntries = 4096,
  ) {}

  /** The block's pieces if already computed (no read, no LRU bump): for checks that must not wait. */
  known(hash: BlockHash): BlockPieces | null {
    return this.cache.get(hash) ?? null;
  }

  /** The block's pieces, or null when it is not stored. */
  get(hash: BlockHash): Promise<BlockPieces | null> {
    const cached = this.cache.get(hash);
    if (cached) {
      this.cache.delete(hash);
      this.cache.set(hash, cached);
      return Promise.resolve(cached);
    }
    let running = this.computing.get(hash);
    if (!running) {
      running = this.compute(hash).finally(() => this.computing.delete(hash));
      this.computing.set(hash, running);
    }
    return running;
  }

  private async compute(hash: BlockHash): Promise<BlockPieces | null> {
    const opened = await this.blocks.openRead(hash);
    if (!opened) return null;
    const hasher = new PieceHasher(opened.size);
    if (opened.bytes) hasher.update(opened.bytes);
    else for await (const chunk of opened.stream as Readable) hasher.update(chunk as Buffer);
    const result = hasher.finish();
    if (result.whole !== hash || result.pieces.length !== pieceCount(opened.size)) throw new StoredBlockCorruptError(hash);
    const pieces: BlockPieces = { hash, size: opened.size, pieces: result.pieces };
    this.cache.set(hash, pieces);
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    return pieces;
  }
}

/** Hashes bytes as they stream by: the whole, and every PIECE_SIZE piece on its own. */
class PieceHasher {
  private readonly whole = createHash('sha256');
  private piece = createHash('sha256');
  private inPiece = 0;
  private seen = 0;
  private readonly pieces: BlockHash[] = [];

  constructor(private readonly size: number) {}

  update(chunk: Buffer): void {
    this.whole.update(chunk);
    this.seen += chunk.length;
    let at = 0;
    while (at < chunk.length) {
      const take = Math.min(PIECE_SIZE - this.inPiece, chunk.length - at);
      this.piece.update(chunk.subarray(at, at + take));
      this.inPiece += take;
      at += take;
      if (this.inPiece === PIECE_SIZE) this.closePiece();
    }
  }

  finish(): { whole: BlockHash | null; pieces: BlockHash[] } {
    if (this.inPiece > 0) this.closePiece();
    // A stream shorter or longer than the size it announced is as bad as a wrong hash.
    if (this.seen !== this.size) return { whole: null, pieces: this.pieces };
    return { whole: hexOfDigest(this.whole.digest()), pieces: this.pieces };
  }

  private closePiece(): void {
    this.pieces.push(hexOfDigest(this.piece.digest()));
    this.piece = createHash('sha256');
    this.inPiece = 0;
  }
}
