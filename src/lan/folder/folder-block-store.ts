import { stat } from 'node:fs/promises';
import { BlockBufferPool } from '../../engine/block-buffers.ts';
import type { LocalBlockStore } from '../../engine/types.ts';
import { MAX_BLOCK_SIZE, type BlockHash, type FilePath } from '../../protocol/index.ts';
import type { DiskBlockStore } from '../store/disk-block-store.ts';
import { sha256Hex } from '../store/node-sha256.ts';
import { sharedSha256Worker } from '../store/sha256-worker.ts';
import type { SqliteStateStore } from '../store/sqlite-state-store.ts';
import type { FileAssembly } from './file-assembly.ts';
import { BlockCrcBook } from './block-crc-book.ts';
import { FolderBlockIndex } from './folder-block-index.ts';

/**
 * A folder-mode daemon's blocks as the engine and its LAN peers see them:
 *
 * - the folder's own files (FolderBlockIndex): every block of a file in place, read back and
 *   hash-checked when asked for; a file changed under the daemon is a miss;
 * - the temp files of files being assembled (FileAssembly): a received block is written at its
 *   offset into the temp file of every planned file that uses it, and nowhere else; read back
 *   hash-checked; a killed daemon resumes from them (`FileAssembly.recover`);
 * - the staging store (DiskBlockStore in the state dir): received blocks no temp file took (a
 *   block that arrived before its file was planned, a file past the open-file limit), blocks
 *   saved from a temp file given up, and local files cut for upload. Once a recorded file holds
 *   a staged block, the staged copy goes (`evictRecorded`).
 *
 * So each received block is written once, and the state directory stays small. Why: a second
 * copy of every block doubled the disk a folder needs, and the staging write was three quarters
 * of the receiver's write time (issue 14); Syncthing serves from its files the same way.
 */
export class FolderBlockStore implements LocalBlockStore {
  readonly index: FolderBlockIndex;
  private readonly crcs: BlockCrcBook;
  /** Blocks of files recorded since the last eviction: their staged copies may go. */
  private readonly recorded = new Set<BlockHash>();
  /** Buffers for blocks served from the folder: about the blocks queued on the links. */
  private readonly servePool = new BlockBufferPool(MAX_BLOCK_SIZE, 8, 10_000, true);

  constructor(
    private readonly staging: DiskBlockStore,
    private readonly assembly: FileAssembly,
    root: string,
    state: SqliteStateStore,
    /** A file was found changed under the daemon: its blocks are no longer served from it. */
    onFileChanged: (path: FilePath) => void = () => undefined,
  ) {
    const records = state.folderRecords();
    this.crcs = new BlockCrcBook(state);
    this.index = new FolderBlockIndex(root, records, onFileChanged, this.crcs);
    // Copies staged by an earlier run (or an earlier version, which kept every block) go too.
    for (const record of records) if (!record.deleted) for (const hash of record.blocks) this.recorded.add(hash);
    state.onFolderRecord = (path, record) => {
      this.index.recordChanged(path, record);
      if (record && !record.deleted) for (const hash of record.blocks) this.recorded.add(hash);
    };
  }

  async hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    const found = await this.staging.hasBlocks(hashes);
    for (const hash of hashes) if (this.assembly.holds(hash)) found.add(hash);
    for (const hash of await this.index.present(hashes.filter((hash) => !found.has(hash)))) found.add(hash);
    return found;
  }

  async getBlock(hash: BlockHash): Promise<Uint8Array | null> {
    return (await this.assembly.read(hash)) ?? (await this.staging.getBlock(hash)) ?? (await this.index.read(hash));
  }

  /**
   * A block to serve to a peer: as `getBlock`, but a block read from the folder lands in a
   * reused buffer, which the peer link hands back (`releaseRead`) once the socket has taken
   * every byte. Why: a fresh 4 MiB buffer per block served cost the sending daemon about
   * three times the read itself in page faults and zeroing, and most of its garbage
   * collection (issue 14).
   *
   * A block the folder's index places is read from the folder before the staging store is
   * asked: nearly every block served is in a file in place and not staged, and asking the
   * staging store first cost an `ENOENT` open per block served (1.8 ms each through libuv's
   * pool and back to the busy main thread, measured on a 2-core machine, issue 14). A staged
   * copy still serves when the file no longer holds the block.
   */
  async readBlock(hash: BlockHash): Promise<Uint8Array | null> {
    return (await this.assembly.read(hash)) ?? (await this.index.readForPeer(hash, this.servePool)) ?? (await this.staging.getBlock(hash));
  }

  /** Writes the CRC-32s learned and not yet kept (before the state store closes). */
  flush(): void {
    this.crcs.flush();
  }

  releaseRead(bytes: Uint8Array): void {
    this.servePool.give(bytes);
  }

  /**
   * A block of a local file cut for upload: always staged, since the upload reads it back
   * (`isUploading` keeps it from eviction; a temp file may be taken and renamed meanwhile).
   */
  async putBlock(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    if (sha256Hex(bytes) !== hash) throw new Error(`block bytes do not hash to ${hash.slice(0, 12)}…`);
    await Promise.all([this.staging.putHashed(hash, bytes), this.assembly.blockArrived(hash, bytes)]);
  }

  /**
   * A received block: one SHA-256 (on the hash worker when the bytes are in a shared LAN
   * buffer), and one write (its temp files, else the staging store), only after the hash matched.
   */
  async putVerified(hash: BlockHash, bytes: Uint8Array): Promise<BlockHash> {
    const actual = await sharedSha256Worker.hash(bytes);
    if (actual !== hash) return actual;
    if (!(await this.assembly.blockArrived(hash, bytes))) await this.staging.putHashed(hash, bytes);
    return actual;
  }

  /**
   * Removes the staged copies of blocks that files recorded since the last call now hold
   * (checked by size and mtime), except those `busy` says are still read from the store (an
   * upload in progress); returns how many went.
   */
  async evictRecorded(busy: (hash: BlockHash) => boolean): Promise<number> {
    const hashes = [...this.recorded];
    this.recorded.clear();
    let removed = 0;
    for (const hash of await this.index.present(hashes)) {
      if (busy(hash)) {
        this.recorded.add(hash);
        continue;
      }
      // A file not cut at fixed 4 MiB offsets would place its blocks wrongly: its copies stay.
      const staged = await stat(this.staging.pathOf(hash)).catch(() => null);
      if (!staged || staged.size !== this.index.lengthOf(hash)) continue;
      if (await this.staging.remove(hash)) removed += 1;
    }
    return removed;
  }
}
