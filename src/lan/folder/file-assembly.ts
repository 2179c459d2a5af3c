import { randomBytes } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileRecord } from '../../engine/types.ts';
import { MAX_BLOCK_SIZE, type BlockHash, type FilePath } from '../../protocol/index.ts';
import { TEMP_PREFIX, UnsafePathError, resolveInFolder } from './safe-path.ts';

/**
 * Writes the blocks of files still arriving into temp files beside their targets as each block
 * is stored, at its offset (block i at i × 4 MiB: every nearsync client cuts fixed 4 MiB
 * blocks), the way Syncthing's puller does. The materialiser then only fills what is missing,
 * fsyncs and renames: a file is in place right after its last block, not after every file's
 * blocks were copied a second time. Without this, a 256 MiB transfer ended with 1 s of file
 * writing after the last network byte.
 *
 * Only an optimisation: anything not written here (a block stored before the plan named its
 * file, a file beyond the open-file limit, a block of unexpected length) is read back from the
 * block store when the file is finished. Temp files carry the `.nearsync-tmp-` prefix, which the
 * scanner never syncs, so a killed daemon leaves no partial file under a final name.
 */

/** Temp files open at once; files past this are written whole at the end, as before. */
const MAX_OPEN = 32;

interface Partial {
  path: FilePath;
  sjid: number;
  blocks: readonly BlockHash[];
  size: number;
  /** null until the first block arrives (opened lazily); 'off' once refused or irregular. */
  temp: { path: string; handle: FileHandle } | null | 'off';
  /** Indexes of blocks already written into the temp file. */
  written: Set<number>;
  /** Every operation on this file, in order: opening, writes, the hand-over. */
  queue: Promise<void>;
}

/** A file's partly written temp file, handed to the materialiser to finish. */
export interface AssembledTemp {
  path: string;
  handle: FileHandle;
  written: ReadonlySet<number>;
}

export class FileAssembly {
  private readonly files = new Map<FilePath, Partial>();
  /** hash → paths of planned files using it. */
  private readonly byHash = new Map<BlockHash, Set<FilePath>>();
  private open = 0;

  constructor(
    private readonly root: string,
    private readonly log: (line: string) => void,
  ) {}

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
      const partial: Partial = { path: file.path, sjid: file.sjid, blocks: file.blocks, size: file.size, temp: null, written: new Set(), queue: Promise.resolve() };
      this.files.set(file.path, partial);
      for (const hash of file.blocks) {
        let paths = this.byHash.get(hash);
        if (!paths) this.byHash.set(hash, (paths = new Set()));
        paths.add(file.path);
      }
    }
  }

  /** A verified block was stored: write it wherever a planned file uses it. */
  async blockArrived(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    const paths = this.byHash.get(hash);
    if (!paths) return;
    const writes: Promise<void>[] = [];
    for (const path of paths) {
      const partial = this.files.get(path);
      if (!partial) continue;
      writes.push(this.enqueue(partial, () => this.writeBlock(partial, hash, bytes)));
    }
    await Promise.all(writes);
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
    return { path: temp.path, handle: temp.handle, written: partial.written };
  }

  /** Closes and deletes every temp file (the daemon is stopping). */
  async close(): Promise<void> {
    const all = [...this.files.values()];
    for (const partial of all) this.drop(partial);
    await Promise.all(all.map((partial) => partial.queue));
  }

  private enqueue(partial: Partial, op: () => Promise<void>): Promise<void> {
    const next = partial.queue.then(op);
    // A failed write only costs the optimisation: the materialiser writes the file whole.
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
      const { handle } = partial.temp as { handle: FileHandle };
      await handle.write(bytes, 0, bytes.length, i * MAX_BLOCK_SIZE);
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
    const path = join(parent, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const handle = await open(path, 'wx', 0o644);
    this.open += 1;
    partial.temp = { path, handle };
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

  private async discard(partial: Partial): Promise<void> {
    const temp = partial.temp;
    if (temp === null || temp === 'off') return;
    partial.temp = 'off';
    this.open -= 1;
    await temp.handle.close().catch(() => undefined);
    await unlink(temp.path).catch(() => undefined);
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
