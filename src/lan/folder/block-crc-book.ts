import type { BlockHash } from '../../protocol/index.ts';

/** Where the CRC-32s of a folder's blocks are kept between runs (the daemon's SQLite state). */
export interface BlockCrcStore {
  blockCrcs(): Map<BlockHash, number>;
  putBlockCrcs(entries: ReadonlyArray<readonly [BlockHash, number]>): void;
  deleteBlockCrcs(hashes: readonly BlockHash[]): void;
}

/** How long learned or forgotten CRCs wait to be written: one transaction per burst, not per block. */
const WRITE_DELAY_MS = 1000;

/**
 * The CRC-32 of each folder block whose bytes this daemon saw hash to it (cut from a file in a
 * scan, or read back for a peer and SHA-256-checked once). A peer's later read of the block is
 * checked against the CRC instead of hashed (folder-block-index.ts says why).
 *
 * Kept in the state store, so a block's first serve after a scan or a restart is not hashed
 * again: in an office a daemon serves what it has just scanned, and the hash on that first serve
 * held the first bench run at 1.01 × Syncthing against 1.18–1.21 × for the runs after (issue 14).
 * A CRC is a fact about the block's bytes, never about a file, so it stays true while any file
 * holds the block; the index forgets it once none does. Writes are gathered for a second and go
 * in one transaction; a CRC lost in a crash is only learned again.
 */
export class BlockCrcBook {
  private readonly crcs: Map<BlockHash, number>;
  private readonly toPut = new Map<BlockHash, number>();
  private readonly toDelete = new Set<BlockHash>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly store: BlockCrcStore | null = null) {
    this.crcs = store?.blockCrcs() ?? new Map();
  }

  get(hash: BlockHash): number | undefined {
    return this.crcs.get(hash);
  }

  /** `crc` is the CRC-32 of bytes this daemon saw hash to `hash`. */
  set(hash: BlockHash, crc: number): void {
    if (this.crcs.get(hash) === crc) return;
    this.crcs.set(hash, crc);
    this.toDelete.delete(hash);
    this.toPut.set(hash, crc);
    this.schedule();
  }

  delete(hash: BlockHash): void {
    if (!this.crcs.delete(hash)) return;
    this.toPut.delete(hash);
    this.toDelete.add(hash);
    this.schedule();
  }

  /** Forgets every CRC whose block `keep` says no file holds (left over from an earlier run). */
  keepOnly(keep: (hash: BlockHash) => boolean): void {
    for (const hash of [...this.crcs.keys()]) if (!keep(hash)) this.delete(hash);
  }

  /** Writes what waits (on close, and in tests). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.store) return;
    if (this.toPut.size > 0) this.store.putBlockCrcs([...this.toPut]);
    if (this.toDelete.size > 0) this.store.deleteBlockCrcs([...this.toDelete]);
    this.toPut.clear();
    this.toDelete.clear();
  }

  private schedule(): void {
    if (!this.store || this.timer) return;
    this.timer = setTimeout(() => {
      try {
        this.flush();
      } catch {
        // The store closed first: what was not written is only learned again.
      }
    }, WRITE_DELAY_MS);
    this.timer.unref();
  }
}
