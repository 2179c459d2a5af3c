import type { Readable } from 'node:stream';
import type { BlockHash } from '../../protocol/index.ts';
import type { BlockStore } from './block-store.ts';

export type OpenedBlock = { size: number; stream: Readable };

/**
 * Opens the blocks of a list a few ahead of the one being sent, so that a batch of small
 * blocks does not pay one block-store round trip (an S3 GET) after another. At most `depth`
 * blocks are open and unread at once.
 */
export class BlockReadAhead {
  private readonly opening = new Map<number, Promise<OpenedBlock | null>>();
  private nextToOpen = 0;

  constructor(
    private readonly store: BlockStore,
    /** The hashes in sending order; null for those not to be read (refused). */
    private readonly hashes: ReadonlyArray<BlockHash | null>,
    private readonly depth = 4,
  ) {}

  /** Block `index` opened (null: not stored, or not to be read). Take them in order. */
  take(index: number): Promise<OpenedBlock | null> {
    this.nextToOpen = Math.max(this.nextToOpen, index);
    while (this.nextToOpen < this.hashes.length && this.nextToOpen < index + this.depth) {
      const hash = this.hashes[this.nextToOpen];
      if (hash !== null) {
        const opened = this.store.openRead(hash);
        // Failures surface when the block is taken; a block never taken must not leave an unhandled rejection.
        opened.catch(() => {});
        this.opening.set(this.nextToOpen, opened);
      }
      this.nextToOpen += 1;
    }
    const opened = this.opening.get(index) ?? Promise.resolve(null);
    this.opening.delete(index);
    return opened;
  }

  /** Closes what was opened ahead and will not be sent. */
  close(): void {
    for (const opened of this.opening.values()) void opened.then((block) => block?.stream.destroy(), () => {});
    this.opening.clear();
  }
}
