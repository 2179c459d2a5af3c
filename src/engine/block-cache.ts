import type { BlockHash } from '../protocol/index.ts';

/**
 * Accounting of the blocks kept only because an online-only file was read: least recently
 * used first, bounded in bytes. It holds no bytes: it says which stored blocks to remove.
 */
export class LruBlockCache {
  /** Insertion order is use order: the first key is the least recently used. */
  private readonly entries = new Map<BlockHash, number>();
  private bytesValue = 0;

  constructor(private limitBytes: number) {
    if (!(limitBytes >= 0)) throw new RangeError('the cache limit must be a number of bytes ≥ 0');
  }

  get bytes(): number {
    return this.bytesValue;
  }

  get size(): number {
    return this.entries.size;
  }

  get limit(): number {
    return this.limitBytes;
  }

  keys(): IterableIterator<BlockHash> {
    return this.entries.keys();
  }

  has(hash: BlockHash): boolean {
    return this.entries.has(hash);
  }

  /** The block was read or stored now: it becomes the most recently used. */
  touch(hash: BlockHash, bytes: number): void {
    this.remove(hash);
    this.entries.set(hash, bytes);
    this.bytesValue += bytes;
  }

  /** A cached block was read now: it becomes the most recently used (no-op when not cached). */
  use(hash: BlockHash): void {
    const bytes = this.entries.get(hash);
    if (bytes === undefined) return;
    this.entries.delete(hash);
    this.entries.set(hash, bytes);
  }

  /**
   * A block found stored whose last use is unknown (a restart, a folder just made online
   * only): it goes first when room is needed, before any block used this session.
   */
  addCold(hash: BlockHash, bytes: number): void {
    if (this.entries.has(hash)) return;
    const rest = [...this.entries];
    this.entries.clear();
    this.entries.set(hash, bytes);
    for (const [key, value] of rest) this.entries.set(key, value);
    this.bytesValue += bytes;
  }

  /** Adds many cold blocks at once (one pass, not one per block). */
  addAllCold(blocks: Iterable<[BlockHash, number]>): void {
    const rest = [...this.entries];
    this.entries.clear();
    this.bytesValue = 0;
    for (const [hash, bytes] of blocks) {
      if (this.entries.has(hash)) continue;
      this.entries.set(hash, bytes);
      this.bytesValue += bytes;
    }
    for (const [hash, bytes] of rest) {
      if (this.entries.has(hash)) this.bytesValue -= this.entries.get(hash)!;
      this.entries.delete(hash);
      this.entries.set(hash, bytes);
      this.bytesValue += bytes;
    }
  }

  /** No longer a cache block (a kept file uses it now, or it is gone). */
  remove(hash: BlockHash): void {
    const bytes = this.entries.get(hash);
    if (bytes === undefined) return;
    this.entries.delete(hash);
    this.bytesValue -= bytes;
  }

  setLimit(limitBytes: number): void {
    if (!(limitBytes >= 0)) throw new RangeError('the cache limit must be a number of bytes ≥ 0');
    this.limitBytes = limitBytes;
  }

  /**
   * Takes out least recently used blocks until the rest fit the limit and returns them (for
   * the caller to delete). `spare` is never taken (a block being read right now), so the
   * cache may stay over its limit by those blocks.
   */
  evictOverflow(spare: ReadonlySet<BlockHash> = NONE): BlockHash[] {
    const evicted: BlockHash[] = [];
    if (this.bytesValue <= this.limitBytes) return evicted;
    for (const [hash, bytes] of this.entries) {
      if (this.bytesValue <= this.limitBytes) break;
      if (spare.has(hash)) continue;
      this.entries.delete(hash);
      this.bytesValue -= bytes;
      evicted.push(hash);
    }
    return evicted;
  }

  /** Takes out every block but `spare` (storage ran out: kept files come first). */
  evictAll(spare: ReadonlySet<BlockHash> = NONE): BlockHash[] {
    const limit = this.limitBytes;
    this.limitBytes = 0;
    try {
      return this.evictOverflow(spare);
    } finally {
      this.limitBytes = limit;
    }
  }
}

const NONE: ReadonlySet<BlockHash> = new Set();
