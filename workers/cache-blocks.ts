/// <reference lib="webworker" />
import type { BlockHash } from '../src/protocol/index.ts';
import { BlockFiles } from './block-files.ts';
import { heldUntilSettled } from '../src/engine/held-while-pending.ts';

/** The storage bucket of blocks read for online-only files: not persisted, so the browser may clear it. */
const BUCKET = 'nearsync-online-cache';

interface StorageBucket {
  getDirectory(): Promise<FileSystemDirectoryHandle>;
}
interface StorageBucketManager {
  open(name: string, options: { persisted: boolean; durability: 'relaxed' | 'strict' }): Promise<StorageBucket>;
}

/**
 * Blocks kept only because an online-only file was read, in a storage bucket of their own
 * that is not persisted (`navigator.storageBuckets`, Chromium 156 has it in workers, with
 * sync access handles in the bucket's file system): under storage pressure the browser may
 * clear it without touching the workspace's kept blocks, which live in the default bucket
 * the page asks to persist. Same layout as the kept blocks (block-files.ts).
 *
 * A cleared bucket is a miss, never an error: every failure here reads as "not stored", a
 * write that fails opens the bucket again once, and a block the index lists is looked up in
 * the file system before it is reported as present.
 */
export class CacheBlocks {
  private files: Promise<BlockFiles> | null = null;

  private constructor(
    private readonly buckets: StorageBucketManager,
    private readonly writerId: string,
  ) {}

  /** Null where the browser has no storage buckets (then cache blocks share the kept store, still bounded). */
  static open(writerId: string): CacheBlocks | null {
    const buckets = (navigator as unknown as { storageBuckets?: StorageBucketManager }).storageBuckets;
    return buckets ? new CacheBlocks(buckets, writerId) : null;
  }

  /** Which of `hashes` the bucket holds right now. */
  async has(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    const found = new Set<BlockHash>();
    try {
      const files = await this.blockFiles();
      for (const hash of hashes) {
        // The index is cheap for misses; a hit is checked (the bucket may have been cleared).
        if ((await files.has(hash)) && (await this.file(hash)) !== null) found.add(hash);
      }
    } catch {
      this.files = null;
    }
    return found;
  }

  /** The block writer's thread stored this block in the bucket: the index learns of it. */
  noteStored(hash: BlockHash): void {
    void this.files?.then((files) => files.noteStored(hash)).catch(() => undefined);
  }

  async put(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    try {
      await (await this.blockFiles()).put(hash, bytes);
    } catch (error) {
      // A cleared bucket leaves stale handles: open it again once.
      if (isQuota(error)) throw error;
      this.files = null;
      await (await this.blockFiles()).put(hash, bytes);
    }
  }

  async file(hash: BlockHash): Promise<File | null> {
    return this.lookUp(hash, (files) => files.file(hash));
  }

  async read(hash: BlockHash): Promise<Uint8Array | null> {
    return this.lookUp(hash, (files) => files.read(hash));
  }

  /**
   * A lookup that survives the bucket being cleared and made again by another thread (the
   * block writer stores cache blocks too): this thread's directory handles then point into
   * the deleted bucket, so a block its index lists but the lookup misses is looked up once
   * more through a freshly opened bucket before it counts as gone.
   */
  private async lookUp<T>(hash: BlockHash, get: (files: BlockFiles) => Promise<T | null>): Promise<T | null> {
    let listed = false;
    try {
      const files = await this.blockFiles();
      const found = await get(files);
      if (found !== null) return found;
      listed = await files.has(hash);
    } catch {
      listed = true;
    }
    if (!listed) return null;
    this.files = null;
    try {
      return await get(await this.blockFiles());
    } catch {
      this.files = null;
      return null;
    }
  }

  async delete(hashes: readonly BlockHash[]): Promise<void> {
    try {
      const files = await this.blockFiles();
      for (const hash of hashes) await files.delete(hash);
    } catch {
      this.files = null;
    }
  }

  private blockFiles(): Promise<BlockFiles> {
    this.files ??= this.buckets
      .open(BUCKET, { persisted: false, durability: 'relaxed' })
      // Held while it opens its directory (held-while-pending.ts): nothing else refers to it.
      .then((bucket) => heldUntilSettled(bucket, bucket.getDirectory()))
      .then((root) => BlockFiles.openIn(root, this.writerId));
    this.files.catch(() => (this.files = null));
    return this.files;
  }
}

function isQuota(error: unknown): boolean {
  return error instanceof DOMException && error.name === 'QuotaExceededError';
}
