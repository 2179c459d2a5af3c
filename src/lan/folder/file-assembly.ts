import { constants } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { expectedBlockSize } from '../../engine/block-layout.ts';
import type { FileRecord } from '../../engine/types.ts';
import { MAX_BLOCK_SIZE, type BlockHash, type FilePath } from '../../protocol/index.ts';
import { sha256Hex } from '../store/node-sha256.ts';
import { BlockFileWriter, type BlockFileTarget } from './block-file-writer.ts';
import { TEMP_PREFIX, UnsafePathError, resolveInFolder } from './safe-path.ts';

/**
 * Writes the blocks of files still arriving into temp files beside their targets as each block
 * is received, at its offset (block i at i × 4 MiB: every nearsync client cuts fixed 4 MiB
 * blocks), the way Syncthing's puller does. The materialiser then only fills what is missing,
 * fsyncs and renames: a file is in place right after its last block.
 *
 * A block written here is written nowhere else (issue 14: a second write into the staging
 * store cost three quarters of the receiver's write time), so the temp files are also a block
 * store: `holds` and `read` answer for the blocks in them, read back and hash-checked. Each
 * temp file is named after its journal entry (`.nearsync-tmp-e<sjid>`), so a daemon killed
 * mid-transfer finds it again at start (`recover`), keeps the 4 MiB regions that hash to the
 * entry's blocks and fetches only the rest. A temp file given up while a live file still needs
 * some of its blocks (its entry was replaced, a write failed) hands those blocks to `keep`
 * (the staging store) before it goes; any it could not keep are reported to `lost`, which the
 * engine fetches again. Temp files carry the `.nearsync-tmp-` prefix, which the scanner never
 * syncs, so no partial file ever shows under a final name.
 */

/** Temp files open at once; blocks of files past this go to the staging store. */
const MAX_OPEN = 32;

interface Partial {
  path: FilePath;
  sjid: number;
  blocks: readonly BlockHash[];
  size: number;
  /** null until the first block arrives (opened lazily); 'off' once refused or irregular. */
  temp: TempFile | null | 'off';
  /** Indexes of blocks already written into (or recovered from) the temp file. */
  written: Set<number>;
  /** Every operation on this file, in order: opening, writes, the hand-over. */
  queue: Promise<void>;
}

/** An open temp file: `direct` writes blocks past the page cache (BlockFileWriter). */
interface TempFile extends BlockFileTarget {
  path: string;
}

/** A file's partly written temp file, handed to the materialiser to finish. */
export interface AssembledTemp {
  path: string;
  handle: FileHandle;
  written: ReadonlySet<number>;
}

export interface FileAssemblyOptions {
  /** Whether a live file still needs `hash` (a temp file given up saves only those). */
  wanted?: (hash: BlockHash) => boolean;
  /** Keeps a verified block elsewhere (the staging store) before its temp file goes. */
  keep?: (hash: BlockHash, bytes: Uint8Array) => Promise<void>;
  /** Blocks counted as stored that are gone now: fetch them again. */
  lost?: (hashes: BlockHash[]) => void;
}

/** The temp file of journal entry `sjid` in `parent`: found again by a restarted daemon. */
export function tempPathOf(parent: string, sjid: number): string {
  return join(parent, `${TEMP_PREFIX}e${sjid}`);
}

export class FileAssembly {
  private readonly files = new Map<FilePath, Partial>();
  /** hash → paths of planned files using it. */
  private readonly byHash = new Map<BlockHash, Set<FilePath>>();
  /** Absolute paths of the temp files this assembly holds (the scanner leaves them alone). */
  private readonly tempPaths = new Set<string>();
  private open = 0;
  private readonly writes: BlockFileWriter;

  constructor(
    private readonly root: string,
    private readonly log: (line: string) => void,
    private readonly options: FileAssemblyOptions = {},
  ) {
    this.writes = new BlockFileWriter({ log });
  }

  /**
   * Adopts the temp files a killed (or stopped) run left for `incomplete` (the live files not
   * in place yet, from the state store), before the engine asks which blocks are stored: each
   * 4 MiB region that hashes to its block counts as written. Resolves with how many blocks
   * were found.
   */
  async recover(incomplete: readonly FileRecord[]): Promise<number> {
    let found = 0;
    const buffer = Buffer.allocUnsafe(MAX_BLOCK_SIZE);
    for (const file of incomplete) {
      if (this.files.has(file.path) || file.blocks.length === 0 || this.open >= MAX_OPEN) continue;
      let parent: string;
      try {
        parent = (await resolveInFolder(this.root, file.path, { createParents: false })).parent;
      } catch {
        continue; // unsafe or its directory is gone: nothing to adopt
      }
      const path = tempPathOf(parent, file.sjid);
      let handle: FileHandle;
      try {
        handle = await open(path, constants.O_RDWR | constants.O_NOFOLLOW);
      } catch {
        continue;
      }
      const direct = await this.writes.openDirect(handle);
      const partial = this.add(file);
      partial.temp = { path, handle, direct };
      this.open += 1;
      this.tempPaths.add(path);
      try {
        const info = await handle.stat();
        if (!info.isFile()) throw new Error('not a regular file');
        for (const [i, hash] of file.blocks.entries()) {
          const length = expectedBlockSize(file.size, file.blocks.length, i);
          if (info.size < i * MAX_BLOCK_SIZE + length) break;
          const bytes = buffer.subarray(0, length);
          if (!(await readFully(handle, bytes, i * MAX_BLOCK_SIZE))) break;
          if (sha256Hex(bytes) === hash) {
            partial.written.add(i);
            found += 1;
          }
        }
      } catch (error) {
        this.log(`resuming ${JSON.stringify(file.path).slice(1, -1)} from its temp file failed: ${(error as Error).message}`);
        partial.written.clear();
        this.drop(partial);
      }
    }
    return found;
  }

  /**
   * The live files whose blocks are still arriving (the materialiser passes them on every run).
   * A file no longer in the list (finished, deleted, or replaced by a newer entry) loses its
   * temp file unless the materialiser took it.
   */
  plan(incomplete: readonly FileRecord[]): void {
    const wanted = new Map(incomplete.map((file) => [file.path, file]));
    for (const [path, partial] of this.files) {
      const file = wanted.get(path);
      if (!file || file.sjid !== partial.sjid) this.drop(partial);
    }
    for (const file of incomplete) {
      if (this.files.has(file.path) || file.blocks.length === 0) continue;
      this.add(file);
    }
  }

  /**
   * A verified block was received: writes it wherever a planned file uses it. Resolves true
   * if a temp file holds it now (then no other copy is needed), false if none took it.
   */
  async blockArrived(hash: BlockHash, bytes: Uint8Array): Promise<boolean> {
    const paths = this.byHash.get(hash);
    if (!paths) return false;
    const writes: Promise<void>[] = [];
    for (const path of paths) {
      const partial = this.files.get(path);
      if (!partial) continue;
      writes.push(this.enqueue(partial, () => this.writeBlock(partial, hash, bytes)));
    }
    await Promise.all(writes);
    return this.holds(hash);
  }

  /** Whether a temp file holds `hash` (written or recovered; the bytes are checked on read). */
  holds(hash: BlockHash): boolean {
    return this.placeOf(hash) !== null;
  }

  /** The absolute path is a temp file this assembly holds (the scanner must not remove it). */
  ownsTemp(absolute: string): boolean {
    return this.tempPaths.has(absolute);
  }

  /**
   * The bytes of `hash` read back from a temp file, or null. A region whose bytes no longer
   * hash right (changed under the daemon) is a miss, and no longer counts as written.
   */
  async read(hash: BlockHash): Promise<Uint8Array | null> {
    for (;;) {
      const place = this.placeOf(hash);
      if (!place) return null;
      const { partial, index } = place;
      const temp = partial.temp as { handle: FileHandle };
      const bytes = new Uint8Array(expectedBlockSize(partial.size, partial.blocks.length, index));
      const ok = await readFully(temp.handle, bytes, index * MAX_BLOCK_SIZE).catch(() => false);
      if (ok && sha256Hex(bytes) === hash) return bytes;
      // Taken by the materialiser meanwhile (handle closed) or changed under us: try elsewhere.
      if (this.files.get(partial.path) === partial && partial.temp === temp) partial.written.delete(index);
      else return null;
    }
  }

  /**
   * Hands over the temp file of `file` (this very entry), or null if none was written. The
   * caller owns it from here: it fills the missing blocks, closes, and renames or deletes it.
   */
  async take(file: FileRecord): Promise<AssembledTemp | null> {
    const partial = this.files.get(file.path);
    if (!partial || partial.sjid !== file.sjid) return null;
    await partial.queue;
    this.forget(partial);
    const temp = partial.temp;
    if (temp === null || temp === 'off') return null;
    this.open -= 1;
    this.tempPaths.delete(temp.path);
    await closeDirect(temp);
    return { path: temp.path, handle: temp.handle, written: partial.written };
  }

  /**
   * The daemon is stopping: closes every temp file but keeps it, so the next run resumes from
   * its blocks (or, if its entry is gone by then, the scanner removes it).
   */
  async close(): Promise<void> {
    const all = [...this.files.values()];
    for (const partial of all) this.forget(partial);
    await Promise.all(all.map((partial) => partial.queue));
    for (const partial of all) {
      const temp = partial.temp;
      if (temp === null || temp === 'off') continue;
      partial.temp = 'off';
      this.open -= 1;
      this.tempPaths.delete(temp.path);
      await closeDirect(temp);
      await temp.handle.close().catch(() => undefined);
    }
  }

  private add(file: FileRecord): Partial {
    const partial: Partial = { path: file.path, sjid: file.sjid, blocks: file.blocks, size: file.size, temp: null, written: new Set(), queue: Promise.resolve() };
    this.files.set(file.path, partial);
    for (const hash of file.blocks) {
      let paths = this.byHash.get(hash);
      if (!paths) this.byHash.set(hash, (paths = new Set()));
      paths.add(file.path);
    }
    return partial;
  }

  private placeOf(hash: BlockHash, except?: Partial): { partial: Partial; index: number } | null {
    for (const path of this.byHash.get(hash) ?? []) {
      const partial = this.files.get(path);
      if (!partial || partial === except || partial.temp === null || partial.temp === 'off') continue;
      for (const index of partial.written) if (partial.blocks[index] === hash) return { partial, index };
    }
    return null;
  }

  private enqueue(partial: Partial, op: () => Promise<void>): Promise<void> {
    const next = partial.queue.then(op);
    // A failed write only costs the optimisation: the block goes to the staging store instead.
    partial.queue = next.catch((error: Error) => {
      this.log(`writing ${JSON.stringify(partial.path).slice(1, -1)} as its blocks arrive failed: ${error.message}; it is written whole once complete`);
      return this.turnOff(partial);
    });
    return partial.queue;
  }

  private async writeBlock(partial: Partial, hash: BlockHash, bytes: Uint8Array): Promise<void> {
    if (partial.temp === 'off' || this.files.get(partial.path) !== partial) return;
    const last = partial.blocks.length - 1;
    const lastSize = partial.size - last * MAX_BLOCK_SIZE;
    for (let i = 0; i <= last; i++) {
      if (partial.blocks[i] !== hash || partial.written.has(i)) continue;
      // A block list that does not match fixed 4 MiB cutting is written whole at the end.
      if (bytes.length !== (i === last ? lastSize : MAX_BLOCK_SIZE)) return this.turnOff(partial);
      if (partial.temp === null) {
        const opened = await this.openTemp(partial);
        if (!opened) return;
      }
      await this.writes.write(partial.temp as TempFile, bytes, i * MAX_BLOCK_SIZE);
      partial.written.add(i);
    }
  }

  private async openTemp(partial: Partial): Promise<boolean> {
    if (this.open >= MAX_OPEN) return false; // stays null: a later block may find a free slot
    let parent: string;
    try {
      parent = (await resolveInFolder(this.root, partial.path, { createParents: true })).parent;
    } catch (error) {
      // The materialiser refuses and logs such paths itself.
      if (error instanceof UnsafePathError) {
        partial.temp = 'off';
        return false;
      }
      throw error;
    }
    const path = tempPathOf(parent, partial.sjid);
    // A leftover of this very entry that was not adopted (a failed resume): start it afresh.
    await unlink(path).catch(() => undefined);
    const handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
    const direct = await this.writes.openDirect(handle);
    this.open += 1;
    partial.temp = { path, handle, direct };
    this.tempPaths.add(path);
    // Dropped while opening: do not leave the file behind.
    if (this.files.get(partial.path) !== partial) {
      await this.discard(partial);
      return false;
    }
    return true;
  }

  private async turnOff(partial: Partial): Promise<void> {
    await this.discard(partial);
    partial.temp = 'off';
  }

  private drop(partial: Partial): void {
    this.forget(partial);
    void this.enqueue(partial, () => this.discard(partial));
  }

  /** Deletes the temp file, first saving the blocks a live file still needs that no other copy here holds. */
  private async discard(partial: Partial): Promise<void> {
    const temp = partial.temp;
    if (temp === null || temp === 'off') return;
    const lost: BlockHash[] = [];
    for (const index of partial.written) {
      const hash = partial.blocks[index];
      if (this.placeOf(hash, partial) || !(this.options.wanted?.(hash) ?? false)) continue;
      const bytes = new Uint8Array(expectedBlockSize(partial.size, partial.blocks.length, index));
      const ok = await readFully(temp.handle, bytes, index * MAX_BLOCK_SIZE).catch(() => false);
      if (ok && sha256Hex(bytes) === hash && this.options.keep) {
        const kept = await this.options.keep(hash, bytes).then(
          () => true,
          () => false,
        );
        if (kept) continue;
      }
      lost.push(hash);
    }
    partial.temp = 'off';
    partial.written.clear();
    this.open -= 1;
    this.tempPaths.delete(temp.path);
    await closeDirect(temp);
    await temp.handle.close().catch(() => undefined);
    await unlink(temp.path).catch(() => undefined);
    if (lost.length > 0) this.options.lost?.(lost);
  }

  private forget(partial: Partial): void {
    if (this.files.get(partial.path) !== partial) return;
    this.files.delete(partial.path);
    for (const hash of partial.blocks) {
      const paths = this.byHash.get(hash);
      paths?.delete(partial.path);
      if (paths?.size === 0) this.byHash.delete(hash);
    }
  }
}

async function closeDirect(temp: TempFile): Promise<void> {
  const direct = temp.direct;
  temp.direct = null;
  await direct?.close().catch(() => undefined);
}

/** Reads `bytes.length` bytes at `position`; false if the file ends first. */
async function readFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<boolean> {
  let filled = 0;
  while (filled < bytes.length) {
    const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, position + filled);
    if (bytesRead === 0) return false;
    filled += bytesRead;
  }
  return true;
}
