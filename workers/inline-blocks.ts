import type { BlockHash } from '../src/protocol/index.ts';
import type { NearsyncDb } from './idb-store.ts';

/**
 * Small blocks (up to INLINE_BLOCK_MAX bytes) as values of IndexedDB's `inlineBlocks` store.
 * A workspace of 100,000 small files would otherwise be 100,000 block files, each a handful
 * of file-system calls (measured: about 4 ms of worker time per block). Values this small are
 * kept inside IndexedDB's own records (Chromium moves only larger values out to blob files),
 * and puts that arrive together share one transaction.
 */
export const INLINE_BLOCK_MAX = 48 * 1024;

/** Puts queued this long (or this many) go in one transaction. */
const FLUSH_DELAY_MS = 4;
const FLUSH_COUNT = 512;

interface PendingPut {
  hash: BlockHash;
  bytes: Uint8Array;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class InlineBlocks {
  private queue: PendingPut[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly db: NearsyncDb) {}

  put(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    // A view into a larger buffer (a batch download) would clone that whole buffer.
    const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
    return new Promise((resolve, reject) => {
      this.queue.push({ hash, bytes: own, resolve, reject });
      if (this.queue.length >= FLUSH_COUNT) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), FLUSH_DELAY_MS);
    });
  }

  async has(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    const tx = this.db.transaction('inlineBlocks');
    const keys = await Promise.all(hashes.map((hash) => tx.store.getKey(hash)));
    await tx.done;
    return new Set(hashes.filter((_, i) => keys[i] !== undefined));
  }

  async get(hash: BlockHash): Promise<Uint8Array | undefined> {
    return this.db.get('inlineBlocks', hash);
  }

  async list(): Promise<BlockHash[]> {
    return (await this.db.getAllKeys('inlineBlocks')) as BlockHash[];
  }

  async delete(hashes: readonly BlockHash[]): Promise<void> {
    if (hashes.length === 0) return;
    const tx = this.db.transaction('inlineBlocks', 'readwrite');
    for (const hash of hashes) void tx.store.delete(hash);
    await tx.done;
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    try {
      const tx = this.db.transaction('inlineBlocks', 'readwrite');
      for (const put of batch) void tx.store.put(put.bytes, put.hash).catch(() => undefined);
      tx.done.then(
        () => batch.forEach((put) => put.resolve()),
        (error: unknown) => batch.forEach((put) => put.reject(error)),
      );
    } catch (error) {
      batch.forEach((put) => put.reject(error));
    }
  }
}
