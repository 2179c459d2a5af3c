import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { POOLED_BLOCK_MIN, type BlockBufferPool } from '../../engine/block-buffers.ts';
import { expectedBlockSize } from '../../engine/block-layout.ts';
import { DIRECT_IO_ALIGN, alignedForDirectIo } from '../../engine/page-aligned.ts';
import { MAX_BLOCK_SIZE, type BlockHash, type FilePath } from '../../protocol/index.ts';
import { sharedSha256Worker } from '../store/sha256-worker.ts';
import type { FolderRecord } from '../store/sqlite-state-store.ts';
import { BlockCrcBook } from './block-crc-book.ts';

/** Where a block lies in the folder, and the file as the daemon last wrote or committed it. */
interface BlockPlace {
  path: FilePath;
  offset: number;
  length: number;
  /** The file's size and mtime when recorded: a file that differs is not read at all. */
  size: number;
  mtimeMs: number;
  /** The file was read whole through the page cache when recorded (a scan): read it through the cache. */
  inPageCache: boolean;
}

/**
 * The blocks a folder-mode daemon can read back from its own files: block hash → (file,
 * offset, length, the file's size and mtime), derived from the folder records (the entry each
 * file holds, cut at fixed 4 MiB offsets like every nearsync client cuts). Why: keeping a second
 * copy of every block in the state directory doubled the disk a folder needs; the files are the
 * copy. Nothing is trusted: a read checks the file's size and mtime, then the bytes (SHA-256;
 * for a peer, the CRC-32 once the block was read: `crcs`); a file changed under the daemon is a
 * miss (its places are dropped until its record is put again), never a bad block. Kept in
 * step by `recordChanged` (the state store's hook).
 */
export class FolderBlockIndex {
  private readonly byHash = new Map<BlockHash, BlockPlace[]>();
  private readonly byPath = new Map<FilePath, readonly BlockHash[]>();
  /**
   * The CRC-32 of each indexed block whose bytes this daemon saw hash to it (cut in a scan, or
   * read from the folder and SHA-256-checked), kept across restarts (block-crc-book.ts). Later
   * reads of the block for a peer are checked against it instead of hashed, as Syncthing checks
   * what it reads against a weak hash: the check is there to notice a file changed under the
   * daemon, and every receiver checks the SHA-256 itself (reads for this daemon's own use are
   * always hashed: their bytes go into its files unchecked). The serving daemon's CPU per GiB
   * served fell by a fifth with it (bench native-pair: 1.80–1.88 s, 1.44–1.48 after); zlib's
   * CRC-32 runs at about twice SHA-256's speed here and needs no trip to the hash worker.
   */
  private readonly crcs: BlockCrcBook;
  /** Cleared once the file system refused a direct read: no failed open before every block after it. */
  private directReads = constants.O_DIRECT !== undefined;

  constructor(
    private readonly root: string,
    records: Iterable<FolderRecord>,
    /** A file was found changed under the daemon (its places are dropped already). */
    private readonly onChanged: (path: FilePath) => void = () => undefined,
    crcs: BlockCrcBook = new BlockCrcBook(),
  ) {
    this.crcs = crcs;
    for (const record of records) this.recordChanged(record.path, record);
    // CRCs of blocks no file holds any more (changed while the daemon was stopped) go.
    this.crcs.keepOnly((hash) => this.byHash.has(hash));
  }

  /**
   * The folder record of `path` was put (`record`) or deleted (undefined). Its `crcs`, when
   * given, were taken from the very bytes that hashed to its blocks.
   */
  recordChanged(path: FilePath, record: FolderRecord | undefined): void {
    const orphaned = this.drop(path);
    if (record && !record.deleted && record.blocks.length > 0) this.place(path, record);
    // A CRC stays while any file holds its block: a record put again keeps what was learned.
    for (const hash of orphaned) if (!this.byHash.has(hash)) this.crcs.delete(hash);
  }

  private place(path: FilePath, record: FolderRecord): void {
    this.byPath.set(path, record.blocks);
    const crcs = record.crcs?.length === record.blocks.length ? record.crcs : undefined;
    record.blocks.forEach((hash, i) => {
      if (crcs) this.crcs.set(hash, crcs[i]);
      const place: BlockPlace = {
        path,
        offset: i * MAX_BLOCK_SIZE,
        length: expectedBlockSize(record.size, record.blocks.length, i),
        size: record.size,
        mtimeMs: record.mtimeMs,
        inPageCache: record.inPageCache === true,
      };
      const places = this.byHash.get(hash);
      if (places) places.push(place);
      else this.byHash.set(hash, [place]);
    });
  }

  /** Whether some indexed file holds `hash` (by its record; the bytes are checked on read). */
  covers(hash: BlockHash): boolean {
    return this.byHash.has(hash);
  }

  /** The length `hash` has where the index places it (fixed 4 MiB cutting), or null if nowhere. */
  lengthOf(hash: BlockHash): number | null {
    return this.byHash.get(hash)?.[0].length ?? null;
  }

  /**
   * The subset of `hashes` in a file that still has the size and mtime of its record (one
   * stat per file). A changed file's places are dropped.
   */
  async present(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    const found = new Set<BlockHash>();
    const unchanged = new Map<FilePath, boolean>();
    for (const hash of hashes) {
      for (const place of this.byHash.get(hash) ?? []) {
        let ok = unchanged.get(place.path);
        if (ok === undefined) {
          ok = await this.unchanged(place);
          unchanged.set(place.path, ok);
          if (!ok) this.changed(place.path);
        }
        if (ok) {
          found.add(hash);
          break;
        }
      }
    }
    return found;
  }

  /**
   * The bytes of `hash` read from a file that holds it, or null: every place is tried, and a
   * file whose size, mtime or bytes no longer match is dropped from the index (a miss). The
   * bytes are SHA-256-checked: they may be written into another file of the folder.
   */
  async read(hash: BlockHash): Promise<Uint8Array | null> {
    return this.readChecked(hash, undefined, false);
  }

  /**
   * `read` for a peer, into a buffer of `pool`: after the block's first read the bytes are
   * checked against its CRC-32 (`crcs`) instead, since the peer checks the SHA-256 itself.
   */
  async readForPeer(hash: BlockHash, pool: BlockBufferPool): Promise<Uint8Array | null> {
    return this.readChecked(hash, pool, true);
  }

  private async readChecked(hash: BlockHash, pool: BlockBufferPool | undefined, crcWillDo: boolean): Promise<Uint8Array | null> {
    for (const place of [...(this.byHash.get(hash) ?? [])]) {
      const bytes = await this.readPlace(place, pool);
      if (bytes && (await this.holds(hash, bytes, crcWillDo))) return bytes;
      if (bytes) pool?.give(bytes);
      this.changed(place.path);
    }
    return null;
  }

  /** Whether `bytes`, read where the index places `hash`, are that block (the CRC-32 once known). */
  private async holds(hash: BlockHash, bytes: Uint8Array, crcWillDo: boolean): Promise<boolean> {
    const known = crcWillDo ? this.crcs.get(hash) : undefined;
    if (known !== undefined) return crc32(bytes) === known;
    if ((await sharedSha256Worker.hash(bytes)) !== hash) return false;
    // Still indexed: a block whose last place went meanwhile is not remembered for nothing.
    if (this.byHash.has(hash)) this.crcs.set(hash, crc32(bytes));
    return true;
  }

  /**
   * Into a buffer of `pool` (shared memory: hashed on the hash worker) when given and the block
   * is large, else into a fresh ordinary buffer (hashed here). Never a fresh SharedArrayBuffer:
   * V8 does not count their memory towards collecting garbage, so unreferenced ones pile up
   * (1.6 GB of RSS after 400 blocks in a test) until something else makes it collect.
   *
   * A pooled buffer is page-aligned (the LAN pools' are), so the block is read past the page
   * cache (O_DIRECT, the read padded to 4 KiB): a daemon's files were written that way as they
   * arrived, so they are seldom in the page cache when peers ask, and filling it cost the serving
   * daemon 0.20–0.26 s of system time per 256 MiB on the bench machine against 0.03 direct (0.05
   * from pages already cached). A file this run cut in a scan (`inPageCache`) was just read
   * through the cache and is read through it: its pages are there, and a direct read would go
   * to the disk for bytes in memory (no rate gain shown in the bench: the disk reads saved are
   * the point). Where the file system refuses O_DIRECT, through the page cache.
   */
  private async readPlace(place: BlockPlace, pool?: BlockBufferPool): Promise<Uint8Array | null> {
    const pooled = pool !== undefined && place.length >= POOLED_BLOCK_MIN && place.length <= pool.size;
    const bytes = pooled ? new Uint8Array(pool.take(), 0, place.length) : new Uint8Array(place.length);
    const padded = Math.ceil(place.length / DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
    const direct = !place.inPageCache && this.directReads && place.offset % DIRECT_IO_ALIGN === 0 && alignedForDirectIo(bytes, padded);
    let read: ReadOutcome = 'refused';
    try {
      if (direct) read = await this.readInto(place, new Uint8Array(bytes.buffer, bytes.byteOffset, padded), constants.O_DIRECT);
      if (read === 'refused') {
        if (direct) this.directReads = false;
        read = await this.readInto(place, bytes, 0);
      }
    } finally {
      // A file cut short under us: the pooled buffer goes back (a lost shared one is not collected soon).
      if (read !== 'read') pool?.give(bytes);
    }
    return read === 'read' ? bytes : null;
  }

  /**
   * Fills `into` (at least the place's length of it: a direct read may end at the file's end
   * inside its padding) from the place, if the file is still as indexed. 'refused': the file
   * system will not read it with `extraFlags` (O_DIRECT), try without.
   */
  private async readInto(place: BlockPlace, into: Uint8Array, extraFlags: number): Promise<ReadOutcome> {
    let handle;
    try {
      // A symlink put in the file's place is not followed (its target's bytes would fail the hash anyway).
      handle = await open(join(this.root, place.path), constants.O_RDONLY | constants.O_NOFOLLOW | extraFlags);
    } catch (error) {
      return extraFlags !== 0 && (error as NodeJS.ErrnoException).code === 'EINVAL' ? 'refused' : 'miss';
    }
    try {
      const info = await handle.stat();
      if (!info.isFile() || info.size !== place.size || info.mtimeMs !== place.mtimeMs) return 'miss';
      let filled = 0;
      while (filled < place.length) {
        const { bytesRead } = await handle.read(into, filled, into.length - filled, place.offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return filled < place.length ? 'miss' : 'read';
    } catch (error) {
      return extraFlags !== 0 && (error as NodeJS.ErrnoException).code === 'EINVAL' ? 'refused' : 'miss';
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  private async unchanged(place: BlockPlace): Promise<boolean> {
    try {
      const info = await stat(join(this.root, place.path));
      return info.isFile() && info.size === place.size && info.mtimeMs === place.mtimeMs;
    } catch {
      return false;
    }
  }

  private changed(path: FilePath): void {
    if (!this.byPath.has(path)) return;
    for (const hash of this.drop(path)) this.crcs.delete(hash);
    this.onChanged(path);
  }

  /** Removes the places of `path`; returns the blocks that no file holds any more. */
  private drop(path: FilePath): BlockHash[] {
    const hashes = this.byPath.get(path);
    if (!hashes) return [];
    this.byPath.delete(path);
    const orphaned: BlockHash[] = [];
    for (const hash of new Set(hashes)) {
      const places = this.byHash.get(hash)?.filter((place) => place.path !== path);
      if (places && places.length > 0) this.byHash.set(hash, places);
      else {
        this.byHash.delete(hash);
        orphaned.push(hash);
      }
    }
    return orphaned;
  }
}

type ReadOutcome = 'read' | 'miss' | 'refused';
