import type { FileRecord } from '../../src/engine/types.ts';
import { MAX_BLOCK_SIZE, conflictedCopyName, type BlockHash, type FilePath } from '../../src/protocol/index.ts';
import { GcNudge } from '../gc-nudge.ts';
import type { BlobBlockStore } from '../upload-queue.ts';
import { fileIn, type FolderDirs } from './folder-dirs.ts';
import { matchesRecord, type FolderRecords } from './folder-records.ts';
import type { FolderRecord } from './folder-sync-store.ts';

export interface FolderWriterOptions {
  dirs: FolderDirs;
  records: FolderRecords;
  blocks: BlobBlockStore;
  sha256: (bytes: Uint8Array) => Promise<BlockHash>;
  /** This browser's label, in conflicted copies' names. */
  device: string;
  now?: () => Date;
}

/** Chromium's rename in place (not in TypeScript's DOM types yet). */
interface RenamableFileHandle extends FileSystemFileHandle {
  move(name: string): Promise<void>;
}

/** A handle, a writable and the Files read before, during and after the write (and a Blob per block). */
const PLATFORM_OBJECTS_PER_WRITE = 5;

export type WriteOutcome = 'written' | 'same' | 'kept-aside';

/**
 * Journal → folder, one file at a time. A file is written through a
 * `FileSystemWritableFileStream`, which writes into a swap file beside the target and moves
 * it into place on close(): a reader of the folder sees the old file or the new one, never
 * half of one, so no temp name of our own is needed. A file in the folder that folder sync
 * did not write (or that changed since) is never overwritten or deleted: it is renamed to a
 * conflicted copy first, which the folder scan then uploads as a new file.
 */
export class FolderWriter {
  private readonly now: () => Date;
  /** Each write opens a handle, a writable and three Files, dropped at once (see gc-nudge.ts). */
  private readonly nudge = new GcNudge();

  constructor(private readonly options: FolderWriterOptions) {
    this.now = options.now ?? (() => new Date());
  }

  /** Writes the journal's `file` (every block stored here) over whatever version folder sync left at its path. */
  async write(file: FileRecord, keptAside = false): Promise<WriteOutcome> {
    const { dirs, records } = this.options;
    const record = records.get(file.path);
    this.nudge.counted(PLATFORM_OBJECTS_PER_WRITE + file.blocks.length);
    const place = (await dirs.parentOf(file.path, true))!;
    // One lookup that creates the file when missing (an empty file holds nothing to keep aside).
    const handle = await place.dir.getFileHandle(place.name, { create: true });
    const found = await handle.getFile();
    const existing = found.size === 0 ? null : found;
    if (existing && !matchesRecord(existing, record)) {
      // Not what folder sync left here: the same bytes need no write, other bytes are kept aside.
      if (existing.size === file.size && (await this.sameBlocks(existing, file.blocks))) {
        await records.put(recordOf(file, existing));
        return 'same';
      }
      await this.keepAside(place.dir, place.name);
      return this.write(file, true);
    }
    const expected = existing;
    const writable = await handle.createWritable();
    try {
      for (const hash of file.blocks) {
        const blob = await this.options.blocks.getBlob(hash);
        if (!blob) throw new Error(`block ${hash.slice(0, 12)}… of ${file.path} is not stored on this device`);
        await writable.write(blob);
      }
      // The blocks took a while: an edit made in the folder meanwhile is kept aside too.
      const now = await handle.getFile();
      const untouched = expected ? now.size === expected.size && now.lastModified === expected.lastModified : now.size === 0;
      if (!untouched) {
        await writable.abort();
        await this.keepAside(place.dir, place.name);
        return this.write(file, true);
      }
    } catch (error) {
      await writable.abort().catch(() => undefined);
      throw error;
    }
    await writable.close();
    await records.put(recordOf(file, await handle.getFile()));
    return keptAside ? 'kept-aside' : 'written';
  }

  /**
   * The journal deleted `record.path`: the file goes if it is still what folder sync left
   * there; an edited one stays (and is uploaded again as a new file). Empty folders go too.
   */
  async remove(record: FolderRecord): Promise<boolean> {
    const { dirs, records } = this.options;
    await records.remove(record.path);
    const place = await dirs.parentOf(record.path, false);
    if (!place) return false;
    const existing = await fileIn(place.dir, place.name).catch(() => null);
    if (!existing || !matchesRecord(existing.file, record)) return false;
    await place.dir.removeEntry(place.name);
    await dirs.pruneEmpty(place.folder);
    return true;
  }

  /** Renames the folder's file `name` to a conflicted-copy name beside it. */
  private async keepAside(dir: FileSystemDirectoryHandle, name: string): Promise<void> {
    const names = new Set<string>();
    for await (const entry of dir.keys()) names.add(entry);
    const copy = conflictedCopyName(name, this.now(), this.options.device, (candidate) => names.has(candidate));
    const handle = (await dir.getFileHandle(name)) as RenamableFileHandle;
    await handle.move(copy);
  }

  /** Whether the file holds exactly these blocks (read one block at a time). */
  private async sameBlocks(file: File, blocks: readonly BlockHash[]): Promise<boolean> {
    const count = Math.ceil(file.size / MAX_BLOCK_SIZE);
    if (count !== blocks.length) return false;
    for (let i = 0; i < count; i++) {
      const bytes = new Uint8Array(await file.slice(i * MAX_BLOCK_SIZE, (i + 1) * MAX_BLOCK_SIZE).arrayBuffer());
      if ((await this.options.sha256(bytes)) !== blocks[i]) return false;
    }
    return true;
  }
}

function recordOf(file: FileRecord, written: File): FolderRecord {
  return { path: file.path as FilePath, size: written.size, lastModified: written.lastModified, sjid: file.sjid, deleted: false };
}
