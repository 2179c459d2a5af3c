import type { BlockHash } from '../../protocol/index.ts';
import type { BlockStore, OpenedBlock } from './block-store.ts';

export type { OpenedBlock } from './block-store.ts';

/** Blocks open ahead while they come back as streams (an S3 GET each, or a large file). */
export const STREAM_DEPTH = 4;
/** Blocks open ahead while they come back in memory (small block files): enough to keep the threadpool busy. */
export const IN_MEMORY_DEPTH = 32;
/** In-memory bytes held ahead of the block being sent, past which no more are opened. */
export const IN_MEMORY_AHEAD_BYTES = 512 * 1024;

/**
 * Opens the blocks of a list ahead of the one being sent, so that a batch of small blocks
 * does not pay one block-store round trip (an S3 GET, a file read) after another.
 *
 * While blocks come back as streams, at most STREAM_DEPTH are open and unread at once. When
 * the store hands them back in memory (small block files), the one round trip each is all
 * they cost, so up to IN_MEMORY_DEPTH are read ahead, as long as what they hold (those not
 * yet taken, and those under way counted at the mean size so far) stays under
 * IN_MEMORY_AHEAD_BYTES.
 */
export class BlockReadAhead {
  private readonly opening = new Map<number, Promise<OpenedBlock | null>>();
  private nextToOpen = 0;
  private taken = 0;
  /** Whether the last block to arrive came in memory. */
  private inMemory = false;
  /** Bytes of blocks that arrived in memory and are not taken yet. */
  private heldBytes = 0;
  private readonly held = new Map<number, number>();
  /** Reads started and not yet arrived. */
  private underWay = 0;
  /** Blocks that arrived in memory, and their bytes: the mean size expected of those under way. */
  private arrivedInMemory = 0;
  private arrivedInMemoryBytes = 0;
  private closed = false;

  constructor(
    private readonly store: BlockStore,
    /** The hashes in sending order; null for those not to be read (refused). */
    private readonly hashes: ReadonlyArray<BlockHash | null>,
    private readonly depths: { stream: number; inMemory: number; inMemoryBytes: number } = {
      stream: STREAM_DEPTH,
      inMemory: IN_MEMORY_DEPTH,
      inMemoryBytes: IN_MEMORY_AHEAD_BYTES,
    },
  ) {}

  /** Block `index` opened (null: not stored, or not to be read). Take them in order. */
  take(index: number): Promise<OpenedBlock | null> {
    this.taken = index;
    const bytes = this.held.get(index);
    if (bytes !== undefined) {
      this.held.delete(index);
      this.heldBytes -= bytes;
    }
    this.nextToOpen = Math.max(this.nextToOpen, index);
    this.fill();
    const opened = this.opening.get(index) ?? Promise.resolve(null);
    this.opening.delete(index);
    return opened;
  }

  /** Closes what was opened ahead and will not be sent. */
  close(): void {
    this.closed = true;
    for (const opened of this.opening.values()) void opened.then((block) => block?.stream?.destroy(), () => {});
    this.opening.clear();
    this.held.clear();
  }

  private fill(): void {
    while (this.nextToOpen < this.hashes.length && !this.closed) {
      const depth = this.inMemory ? this.depths.inMemory : this.depths.stream;
      if (this.nextToOpen >= this.taken + depth) break;
      if (this.inMemory && this.heldBytes + this.underWay * (this.arrivedInMemoryBytes / this.arrivedInMemory) >= this.depths.inMemoryBytes) break;
      const index = this.nextToOpen;
      const hash = this.hashes[index];
      if (hash !== null) {
        const opened = this.store.openRead(hash);
        // Failures surface when the block is taken; a block never taken must not leave an unhandled rejection.
        this.underWay += 1;
        opened.then(
          (block) => this.arrived(index, block),
          () => void (this.underWay -= 1),
        );
        this.opening.set(index, opened);
      }
      this.nextToOpen += 1;
    }
  }

  private arrived(index: number, block: OpenedBlock | null): void {
    this.underWay -= 1;
    if (!block) return;
    const wasInMemory = this.inMemory;
    this.inMemory = block.bytes !== undefined;
    if (this.inMemory) {
      this.arrivedInMemory += 1;
      this.arrivedInMemoryBytes += block.size;
    }
    // Only a block still waiting to be taken holds memory on our account.
    if (this.inMemory && index > this.taken && this.opening.has(index)) {
      this.held.set(index, block.size);
      this.heldBytes += block.size;
    }
    if (this.inMemory && !wasInMemory) this.fill();
  }
}
