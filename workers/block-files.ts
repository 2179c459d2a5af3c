/// <reference lib="webworker" />
import { POOLED_BLOCK_MIN, type BlockBufferPool } from '../src/engine/block-buffers.ts';
import type { BlockHash } from '../src/protocol/index.ts';
import { heldUntilSettled } from '../src/engine/held-while-pending.ts';

/**
 * Block bytes as files in the origin private file system: `blocks/<ab>/<hash>`.
 *
 * Why files and not IndexedDB Blob values: a Blob made from bytes in the worker lives in
 * the browser process's blob storage until the worker's JS object is garbage collected,
 * and a worker whose heap holds only small Blob wrappers hardly ever collects, so every
 * block synced stayed in the browser process (measured: +1.9 GiB browser RSS for a 1 GiB
 * file). A sync access handle writes straight to the file from the worker; nothing passes
 * through the blob system. Reading gives a File that Chromium backs with the file on disk,
 * so Open/Save still compose a file from block Files without copying it into memory.
 *
 * A block file appears under its name only complete: it is written under a temporary
 * name, closed, then moved into place, so the directory itself is the index and
 * a killed tab leaves at most a temporary file, never a truncated block.
 */

interface MovableFileHandle extends FileSystemFileHandle {
  /** Chromium's rename within the origin private file system (not in TypeScript's DOM types yet). */
  move(destination: FileSystemDirectoryHandle, name: string): Promise<void>;
}

const ROOT = 'blocks';
/** Bytes per write of canHold's probe file. */
const PROBE_PIECE_BYTES = 1024 * 1024;
const TEMP = 'tmp';

export class BlockFiles {
  private readonly shards = new Map<string, Promise<FileSystemDirectoryHandle>>();
  /**
   * Names of the block files, listed once and kept up to date by this worker's puts and
   * deletes: a join asks about thousands of blocks it lacks, and each miss looked up in the
   * file system costs a thrown NotFoundError. Another tab's new block may be missing here;
   * that costs at most a download, since put() checks the file system itself.
   */
  private index: Promise<Set<BlockHash>> | null = null;

  private constructor(
    private readonly root: FileSystemDirectoryHandle,
    private readonly temp: FileSystemDirectoryHandle,
  ) {}

  /** Opens (creating) the block directory. `writerId` names this worker's temporary directory. */
  static async open(writerId: string): Promise<BlockFiles> {
    return BlockFiles.openIn(await navigator.storage.getDirectory(), writerId);
  }

  /** The same layout under another file system root (a storage bucket's). */
  static async openIn(origin: FileSystemDirectoryHandle, writerId: string): Promise<BlockFiles> {
    const root = await origin.getDirectoryHandle(ROOT, { create: true });
    const temps = await root.getDirectoryHandle(TEMP, { create: true });
    return new BlockFiles(root, await temps.getDirectoryHandle(writerId, { create: true }));
  }

  /** Whether the block is stored, as far as this worker knows (see `index`). */
  async has(hash: BlockHash): Promise<boolean> {
    this.index ??= this.list().then((hashes) => new Set(hashes));
    return (await this.index).has(hash);
  }

  /** The stored block as a disk-backed File, or null. */
  async file(hash: BlockHash): Promise<File | null> {
    const handle = await this.handle(hash);
    return handle ? handle.getFile() : null;
  }

  /** Stores bytes the caller has verified. Idempotent: a block already there is left as it is. */
  async put(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    // No look for the block first: callers store what they found missing, and the check
    // before the move below settles the rare race.
    const shard = await this.shard(hash, true);
    const tempName = `${hash}.${crypto.randomUUID()}`;
    const temp = (await this.temp.getFileHandle(tempName, { create: true })) as MovableFileHandle;
    let moved = false;
    try {
      const access = await temp.createSyncAccessHandle();
      try {
        let written = 0;
        while (written < bytes.length) {
          const count = access.write(bytes.subarray(written), { at: written });
          // Chromium 156 answers a write the quota cuts short with its file error code as an
          // unsigned count (2^32 − 8, "no space") after writing part of it: never trust a
          // count past what was asked, and check the size before the block takes its name.
          if (count > bytes.length - written) throw noSpace(hash, written, bytes.length);
          if (count <= 0) throw new Error(`writing block ${hash.slice(0, 12)}… stopped after ${written} of ${bytes.length} bytes`);
          written += count;
        }
        const size = access.getSize();
        if (size !== bytes.length) throw new Error(`block ${hash.slice(0, 12)}… was written as ${size} bytes, not ${bytes.length}`);
        // No flush (fsync): it cost 35–100 % more write time per block (measured, 128 blocks
        // of 4 MiB), and, as with IndexedDB's relaxed durability, a tab or browser crash
        // loses nothing once the handle is closed; only a power cut could.
      } finally {
        access.close();
      }
      // Another tab may have stored the same block meanwhile: keep theirs (a File it handed
      // out stays readable), drop ours.
      if ((await this.handle(hash)) === null) {
        await temp.move(shard, hash);
        moved = true;
      }
      void this.index?.then((known) => known.add(hash));
    } finally {
      // Moved into place, the temporary name is gone: asking to remove it costs a request
      // to the browser process that can only fail.
      if (!moved) await this.temp.removeEntry(tempName).catch(() => undefined);
    }
  }

  /**
   * The block's bytes through a read-only sync access handle, which other readers share: in
   * Chromium 156 it read 4 MiB block files at 190–620 MB/s where a File's arrayBuffer() gave
   * 30–86 MB/s (the same files, a loaded 2-core machine), since a File's bytes come through the
   * browser process's blob system. Null when the block is not stored here; throws when the
   * file cannot be opened so (a writer holds it, or the browser lacks the mode). With
   * `buffers`, a block of at least POOLED_BLOCK_MIN bytes is read into a buffer taken from it.
   */
  async read(hash: BlockHash, buffers: BlockBufferPool | null = null): Promise<Uint8Array | null> {
    const handle = await this.handle(hash);
    if (!handle) return null;
    const open = handle.createSyncAccessHandle as unknown as (options: { mode: 'read-only' }) => Promise<FileSystemSyncAccessHandle>;
    const access = await open.call(handle, { mode: 'read-only' });
    let bytes: Uint8Array | null = null;
    try {
      const size = access.getSize();
      // A large block goes into a reused buffer when the caller hands one (see IdbBlockStore.readBlock).
      bytes = buffers && size >= POOLED_BLOCK_MIN && size <= buffers.size ? new Uint8Array(buffers.take(), 0, size) : new Uint8Array(size);
      const read = access.read(bytes, { at: 0 });
      if (read !== size) throw new Error(`block ${hash.slice(0, 12)}…: read ${read} of ${size} bytes`);
      return bytes;
    } catch (error) {
      if (bytes) buffers?.give(bytes);
      throw error;
    } finally {
      access.close();
    }
  }

  /** Another writer (the block writer's thread) stored this block: the index learns of it. */
  noteStored(hash: BlockHash): void {
    void this.index?.then((known) => known.add(hash));
  }

  /**
   * Whether `bytes` more would fit under the origin's quota now: writes a temporary file of
   * that length and removes it.
   */
  async canHold(bytes: number): Promise<boolean> {
    const name = `space-probe.${crypto.randomUUID()}`;
    const probe = await this.temp.getFileHandle(name, { create: true });
    try {
      const access = await probe.createSyncAccessHandle();
      try {
        // A real write: sizing a file up is not checked against the quota the same way. The
        // bytes go in pieces from one small buffer: a fresh buffer of the whole size (16 MiB at a
        // join) cost a page fault per 4 KiB, about 20–30 µs each on a loaded 2-core machine.
        const piece = new Uint8Array(Math.min(bytes, PROBE_PIECE_BYTES));
        let written = 0;
        while (written < bytes) {
          const want = Math.min(piece.length, bytes - written);
          const count = access.write(want === piece.length ? piece : piece.subarray(0, want), { at: written });
          if (count !== want) return false;
          written += count;
        }
        return access.getSize() === bytes;
      } catch {
        return false;
      } finally {
        access.close();
      }
    } catch {
      return false;
    } finally {
      await this.temp.removeEntry(name).catch(() => undefined);
    }
  }

  async delete(hash: BlockHash): Promise<void> {
    const shard = await this.shard(hash, false);
    await shard?.removeEntry(hash).catch((error: unknown) => {
      if (!isNotFound(error)) throw error;
    });
    void this.index?.then((known) => known.delete(hash));
  }

  /** Every stored block's hash. */
  async list(): Promise<BlockHash[]> {
    const hashes: BlockHash[] = [];
    for (const shardName of await entryNames(this.root)) {
      if (shardName === TEMP) continue;
      const shard = await this.shard(shardName as BlockHash, false);
      if (shard) hashes.push(...((await entryNames(shard)) as BlockHash[]));
    }
    return hashes;
  }

  /** Removes the temporary directories of writers that no longer run (`isStale` says which). */
  static async removeStaleTemps(isStale: (writerId: string) => Promise<boolean>): Promise<void> {
    const origin = await navigator.storage.getDirectory();
    const root = await origin.getDirectoryHandle(ROOT, { create: true });
    const temps = await root.getDirectoryHandle(TEMP, { create: true });
    for (const name of await entryNames(temps)) {
      if (await isStale(name)) await temps.removeEntry(name, { recursive: true }).catch(() => undefined);
    }
  }

  private async handle(hash: BlockHash): Promise<FileSystemFileHandle | null> {
    const shard = await this.shard(hash, false);
    if (!shard) return null;
    try {
      return await shard.getFileHandle(hash);
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  private async shard(hash: BlockHash, create: true): Promise<FileSystemDirectoryHandle>;
  private async shard(hash: BlockHash, create: false): Promise<FileSystemDirectoryHandle | null>;
  private async shard(hash: BlockHash, create: boolean): Promise<FileSystemDirectoryHandle | null> {
    const name = hash.slice(0, 2);
    const known = this.shards.get(name);
    if (known) return known;
    const opening = this.root.getDirectoryHandle(name, { create });
    try {
      const shard = await opening;
      this.shards.set(name, Promise.resolve(shard));
      return shard;
    } catch (error) {
      if (!create && isNotFound(error)) return null;
      throw error;
    }
  }
}

async function entryNames(directory: FileSystemDirectoryHandle): Promise<string[]> {
  const names: string[] = [];
  // TypeScript's DOM types lack the directory's async iterators, which Chromium has.
  const entries = (directory as unknown as { keys(): AsyncIterableIterator<string> }).keys();
  // Held while each step waits (held-while-pending.ts): a pending step is no GC root of its own.
  for (;;) {
    const next = await heldUntilSettled(entries, entries.next());
    if (next.done) return names;
    names.push(next.value);
  }
}

function noSpace(hash: BlockHash, written: number, total: number): DOMException {
  return new DOMException(`writing block ${hash.slice(0, 12)}… ran out of space after ${written} of ${total} bytes`, 'QuotaExceededError');
}

function isNotFound(error: unknown): boolean {
  return error instanceof DOMException && (error.name === 'NotFoundError' || error.name === 'TypeMismatchError');
}
