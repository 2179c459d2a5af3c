import type { BlockHash, FilePath, NamespaceId } from '../protocol/index.ts';
import { expectedBlockSize } from './block-layout.ts';
import type { FileRecord, WantedBlock } from './types.ts';

/** What a change to the live file table did to the set of blocks this device must fetch. */
export interface WantDelta {
  /** Newly wanted, in journal order. */
  added: WantedBlock[];
  /** No longer wanted (no live file uses them any more). */
  removed: BlockHash[];
}

interface Progress {
  bytesDone: number;
  /** Block slots of the file (a block used twice counts twice) not stored yet. */
  missingSlots: number;
}

/**
 * The live file table's blocks, kept up to date change by change so that every operation
 * costs in proportion to the files and blocks it touches, never to the workspace's size:
 * which blocks live files use (counted), which of them this device lacks (the wanted set),
 * which files wait for each missing block, and each incomplete file's bytes present.
 *
 * Files the keep policy makes online only are listed but want nothing: their blocks are
 * fetched when read. Totals, progress and the wanted set count kept files only.
 */
export class LiveBlocks {
  private readonly files = new Map<FilePath, FileRecord>();
  /** Live files' uses of each block (a file using a block twice counts twice). */
  private readonly uses = new Map<BlockHash, number>();
  /** Kept files' uses of each block: a block here is never a cache block. */
  private readonly keptUses = new Map<BlockHash, number>();
  /** Online-only files, and for each of their blocks the files using it (rows to refresh when it comes or goes). */
  private readonly onlineFiles = new Set<FilePath>();
  private readonly onlineUsers = new Map<BlockHash, Set<FilePath>>();
  private onlineBytesValue = 0;
  private readonly have = new Set<BlockHash>();
  /** Missing blocks → the files waiting for them. A key here is a wanted block. */
  private readonly waiting = new Map<BlockHash, Set<FilePath>>();
  /** Incomplete files only: a complete file has no entry. */
  private readonly progress = new Map<FilePath, Progress>();
  private totalBytesValue = 0;
  private doneBytesValue = 0;

  constructor(
    private readonly ns: NamespaceId,
    private isKept: (path: FilePath) => boolean = () => true,
  ) {}

  /** Bytes of kept files. */
  get totalBytes(): number {
    return this.totalBytesValue;
  }

  get doneBytes(): number {
    return this.doneBytesValue;
  }

  get fileCount(): number {
    return this.files.size;
  }

  get onlineFileCount(): number {
    return this.onlineFiles.size;
  }

  /** Bytes of online-only files (listed, not kept). */
  get onlineBytes(): number {
    return this.onlineBytesValue;
  }

  isOnlineOnly(path: FilePath): boolean {
    return this.onlineFiles.has(path);
  }

  /** Whether a kept file uses `hash` (a block to keep, never to evict). */
  isKeptBlock(hash: BlockHash): boolean {
    return this.keptUses.has(hash);
  }

  /** Stored blocks that only online-only files use, with their expected lengths: the cache's content. */
  *heldOnlineOnly(): IterableIterator<[BlockHash, number]> {
    for (const hash of this.onlineUsers.keys()) {
      if (this.have.has(hash) && !this.keptUses.has(hash)) yield [hash, this.onlineBlockSize(hash)];
    }
  }

  /** The expected length of a block an online-only file uses (0 when none does). */
  onlineBlockSize(hash: BlockHash): number {
    for (const path of this.onlineUsers.get(hash) ?? EMPTY) {
      const file = this.files.get(path)!;
      const index = file.blocks.indexOf(hash);
      if (index >= 0) return expectedBlockSize(file.size, file.blocks.length, index);
    }
    return 0;
  }

  /** Blocks live files lack here. */
  get missingCount(): number {
    return this.waiting.size;
  }

  file(path: FilePath): FileRecord | undefined {
    return this.files.get(path);
  }

  allFiles(): IterableIterator<FileRecord> {
    return this.files.values();
  }

  isLive(hash: BlockHash): boolean {
    return this.uses.has(hash);
  }

  holds(hash: BlockHash): boolean {
    return this.have.has(hash);
  }

  isWanted(hash: BlockHash): boolean {
    return this.waiting.has(hash);
  }

  /** Files waiting for this block (empty when it is not wanted). */
  filesWaitingFor(hash: BlockHash): ReadonlySet<FilePath> {
    return this.waiting.get(hash) ?? EMPTY;
  }

  /** Stored blocks of live files. */
  *heldLive(): IterableIterator<BlockHash> {
    for (const hash of this.uses.keys()) if (this.have.has(hash)) yield hash;
  }

  /** Blocks of live files not stored yet, in no particular order. */
  wantedHashes(): IterableIterator<BlockHash> {
    return this.waiting.keys();
  }

  /** Bytes of the file present here (its size once complete). */
  bytesDone(path: FilePath): number {
    const file = this.files.get(path);
    if (!file) return 0;
    if (this.onlineFiles.has(path)) {
      // Online only: what happens to be stored (read before, or shared with a kept file).
      let bytes = 0;
      file.blocks.forEach((hash, index) => {
        if (this.have.has(hash)) bytes += expectedBlockSize(file.size, file.blocks.length, index);
      });
      return file.blocks.every((hash) => this.have.has(hash)) ? file.size : Math.min(bytes, file.size);
    }
    return this.progress.get(path)?.bytesDone ?? file.size;
  }

  /** Every block of the file is stored (for an online-only file: cached right now). */
  isComplete(path: FilePath): boolean {
    const file = this.files.get(path);
    if (!file) return false;
    if (this.onlineFiles.has(path)) return file.blocks.every((hash) => this.have.has(hash));
    return !this.progress.has(path);
  }

  /** Records blocks known to be stored before any file is added (a start-up scan). */
  markStored(hashes: Iterable<BlockHash>): void {
    for (const hash of hashes) this.have.add(hash);
  }

  /**
   * Adds, replaces or removes files (`null` removes). Returns what became wanted (in the order
   * given, so callers pass journal order) and what stopped being wanted.
   */
  apply(changes: ReadonlyArray<{ path: FilePath; next: FileRecord | null }>): WantDelta {
    const added = new Map<BlockHash, WantedBlock>();
    const removed = new Set<BlockHash>();
    for (const { path, next } of changes) {
      const before = this.files.get(path);
      if (before === next) continue;
      if (before) this.detach(before, removed);
      if (next) this.attach(next, added, removed);
    }
    // A block wanted and dropped again within these changes was never handed out.
    for (const hash of removed) added.delete(hash);
    return { added: [...added.values()], removed: [...removed] };
  }

  /** A block was stored. Returns the files whose progress changed. */
  stored(hash: BlockHash): ReadonlySet<FilePath> {
    this.have.add(hash);
    const online = this.onlineUsers.get(hash);
    const paths = this.waiting.get(hash);
    if (!paths) return online ? new Set(online) : EMPTY;
    this.waiting.delete(hash);
    for (const path of paths) {
      const file = this.files.get(path)!;
      const progress = this.progress.get(path)!;
      file.blocks.forEach((block, index) => {
        if (block !== hash) return;
        const bytes = expectedBlockSize(file.size, file.blocks.length, index);
        progress.bytesDone += bytes;
        this.doneBytesValue += bytes;
        progress.missingSlots -= 1;
      });
      if (progress.missingSlots === 0) {
        // Expected sizes may not add up exactly for a malformed layout: complete means size.
        this.doneBytesValue += file.size - progress.bytesDone;
        this.progress.delete(path);
      }
    }
    return online ? new Set([...paths, ...online]) : paths;
  }

  /**
   * Cache blocks removed from the store (evicted): the online-only files using them lack them
   * again, and want nothing. Blocks a kept file uses are never taken here (see forget).
   * Returns the files whose state changed.
   */
  dropped(hashes: readonly BlockHash[]): Set<FilePath> {
    const paths = new Set<FilePath>();
    for (const hash of hashes) {
      if (this.keptUses.has(hash)) continue;
      this.have.delete(hash);
      for (const path of this.onlineUsers.get(hash) ?? EMPTY) paths.add(path);
    }
    return paths;
  }

  /**
   * The keep policy changed: every file is looked at again. Rare (a user's choice), so it
   * rebuilds everything. Returns what became wanted and what stopped being wanted.
   */
  setKeep(isKept: (path: FilePath) => boolean): WantDelta {
    this.isKept = isKept;
    return this.rebuild();
  }

  /**
   * Blocks removed from this device's store: every file using one is incomplete again.
   * Rare (block GC), so it rebuilds everything. Returns what became wanted.
   */
  forget(hashes: readonly BlockHash[]): WantDelta {
    for (const hash of hashes) this.have.delete(hash);
    return this.rebuild();
  }

  private rebuild(): WantDelta {
    const files = [...this.files.values()];
    const removedAll = this.apply(files.map((file) => ({ path: file.path, next: null })));
    const addedAll = this.apply(files.sort((a, b) => a.sjid - b.sjid).map((file) => ({ path: file.path, next: file })));
    const stillWanted = new Set(addedAll.added.map((want) => want.hash));
    return { added: addedAll.added, removed: removedAll.removed.filter((hash) => !stillWanted.has(hash)) };
  }

  private attach(file: FileRecord, added: Map<BlockHash, WantedBlock>, removed: Set<BlockHash>): void {
    this.files.set(file.path, file);
    if (!this.isKept(file.path)) {
      this.onlineFiles.add(file.path);
      this.onlineBytesValue += file.size;
      for (const hash of file.blocks) {
        this.uses.set(hash, (this.uses.get(hash) ?? 0) + 1);
        let paths = this.onlineUsers.get(hash);
        if (!paths) this.onlineUsers.set(hash, (paths = new Set()));
        paths.add(file.path);
      }
      return;
    }
    this.totalBytesValue += file.size;
    let bytesDone = 0;
    let missingSlots = 0;
    file.blocks.forEach((hash, index) => {
      this.uses.set(hash, (this.uses.get(hash) ?? 0) + 1);
      this.keptUses.set(hash, (this.keptUses.get(hash) ?? 0) + 1);
      const bytes = expectedBlockSize(file.size, file.blocks.length, index);
      if (this.have.has(hash)) {
        bytesDone += bytes;
        return;
      }
      missingSlots += 1;
      let paths = this.waiting.get(hash);
      if (!paths) {
        this.waiting.set(hash, (paths = new Set()));
        if (!removed.delete(hash)) added.set(hash, { ns: this.ns, hash, sjid: file.sjid, sizeHint: bytes });
      }
      paths.add(file.path);
    });
    if (missingSlots > 0) {
      this.progress.set(file.path, { bytesDone, missingSlots });
      this.doneBytesValue += bytesDone;
    } else {
      this.doneBytesValue += file.size;
    }
  }

  private detach(file: FileRecord, removed: Set<BlockHash>): void {
    this.files.delete(file.path);
    if (this.onlineFiles.delete(file.path)) {
      this.onlineBytesValue -= file.size;
      for (const hash of file.blocks) {
        countDown(this.uses, hash);
        const paths = this.onlineUsers.get(hash);
        paths?.delete(file.path);
        if (paths?.size === 0) this.onlineUsers.delete(hash);
      }
      return;
    }
    this.totalBytesValue -= file.size;
    this.doneBytesValue -= this.progress.get(file.path)?.bytesDone ?? file.size;
    this.progress.delete(file.path);
    for (const hash of file.blocks) {
      countDown(this.uses, hash);
      countDown(this.keptUses, hash);
      const paths = this.waiting.get(hash);
      if (!paths) continue;
      paths.delete(file.path);
      if (paths.size === 0) {
        this.waiting.delete(hash);
        removed.add(hash);
      }
    }
  }
}

const EMPTY: ReadonlySet<FilePath> = new Set();

function countDown(counts: Map<BlockHash, number>, hash: BlockHash): void {
  const left = (counts.get(hash) ?? 1) - 1;
  if (left > 0) counts.set(hash, left);
  else counts.delete(hash);
}
