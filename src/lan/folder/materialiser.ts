import { randomBytes } from 'node:crypto';
import { open, readdir, type FileHandle, rename, rmdir, stat, unlink, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { expectedBlockSize } from '../../engine/block-layout.ts';
import type { FileRecord, LocalBlockStore } from '../../engine/types.ts';
import type { BlockHash, FilePath } from '../../protocol/index.ts';
import { fsyncDir } from '../store/disk-block-store.ts';
import type { FolderRecord, SqliteStateStore } from '../store/sqlite-state-store.ts';
import { conflictedCopyName } from '../../protocol/index.ts';
import { cutFile, sameBlocks } from './file-blocks.ts';
import type { FileAssembly } from './file-assembly.ts';
import { TEMP_PREFIX, UnsafePathError, foldName, lstatOrNull, resolveInFolder } from './safe-path.ts';

/** What the engine knows right now: the live file table and which files have every block. */
export interface JournalView {
  cursor: number;
  /** Live files, each with whether all its blocks are stored here. */
  files: { file: FileRecord; complete: boolean }[];
}

export interface MaterialiserOptions {
  root: string;
  state: SqliteStateStore;
  /** Where blocks a temp file lacks are read from. */
  blocks: Pick<LocalBlockStore, 'getBlock'>;
  log: (line: string) => void;
  host?: string;
  now?: () => Date;
  /** Temp files written while blocks arrive; without it each file is written whole once complete. */
  assembly?: FileAssembly;
}

/**
 * Writes the journal's live files into the folder and removes the deleted ones. Every
 * file is assembled into a temp file beside its target, fsynced, and renamed into place.
 * A local version that was never committed is kept under a conflicted-copy name before
 * the remote one replaces it. Paths are hostile: refused ones are logged once and skipped.
 */
export class FolderMaterialiser {
  private readonly refused = new Map<FilePath, string>();
  private readonly host: string;
  private readonly now: () => Date;

  constructor(private readonly options: MaterialiserOptions) {
    this.host = options.host ?? hostname();
    this.now = options.now ?? (() => new Date());
  }

  /** Paths refused since start, with the reason (tests and status lines read it). */
  refusedPaths(): ReadonlyMap<FilePath, string> {
    return this.refused;
  }

  /**
   * Brings the folder in step with `view`; resolves true when every live file is in place
   * (written at its current version, or refused and logged), which is when "in sync" is true
   * of the folder and not just of the block store.
   */
  async apply(view: JournalView): Promise<boolean> {
    let inPlace = true;
    const live = new Map(view.files.map((entry) => [entry.file.path, entry]));
    for (const record of this.options.state.folderRecords()) {
      // A record past the engine's cursor is our own commit the journal has not shown yet.
      if (!live.has(record.path) && view.cursor >= record.sjid) await this.removeDeleted(record);
    }
    const ordered = [...view.files].sort((a, b) => a.file.sjid - b.file.sjid);
    // Of live paths that a case-insensitive or normalising filesystem would merge, the oldest
    // entry wins, whatever order their blocks arrive in.
    const owners = new Map<string, FilePath>();
    for (const { file } of ordered) if (!owners.has(foldName(file.path))) owners.set(foldName(file.path), file.path);
    for (const { file, complete } of ordered) {
      if (!complete) {
        inPlace = false;
        continue;
      }
      const record = this.options.state.folderRecord(file.path);
      if (record && record.sjid >= file.sjid) continue;
      try {
        const owner = owners.get(foldName(file.path));
        if (owner !== file.path) {
          throw new UnsafePathError(`differs only by case or Unicode form from "${printable(owner ?? '')}", an older entry of the journal`);
        }
        await this.write(file, record);
        this.refused.delete(file.path);
      } catch (error) {
        if (!(error instanceof UnsafePathError)) throw error;
        if (this.refused.get(file.path) !== error.message) {
          this.options.log(`refused "${printable(file.path)}" from the journal: ${error.message}`);
        }
        this.refused.set(file.path, error.message);
      }
    }
    // After the writes above took their temp files: the rest are still arriving.
    this.options.assembly?.plan(ordered.filter(({ file, complete }) => !complete && owners.get(foldName(file.path)) === file.path).map(({ file }) => file));
    return inPlace;
  }

  private async removeDeleted(record: FolderRecord): Promise<void> {
    const { state, root, log } = this.options;
    let target;
    try {
      target = await resolveInFolder(root, record.path, { createParents: false });
    } catch (error) {
      if (!(error instanceof UnsafePathError)) throw error;
      state.deleteFolderRecord(record.path);
      return;
    }
    const info = await lstatOrNull(target.absolute);
    if (info && !record.deleted && info.isFile() && matches(info, record)) {
      await unlink(target.absolute);
      await this.pruneEmptyParents(target.parent);
      log(`deleted ${printable(record.path)}`);
    } else if (info && !record.deleted) {
      // Edited here since: the edit survives the remote delete and is uploaded as a new file.
      log(`kept ${printable(record.path)}: deleted remotely but changed here`);
    }
    state.deleteFolderRecord(record.path);
  }

  private async write(file: FileRecord, record: FolderRecord | undefined): Promise<void> {
    const { root, state, log } = this.options;
    const target = await resolveInFolder(root, file.path, { createParents: true });
    const existing = await lstatOrNull(target.absolute);
    // What the target should still be when the new version goes in: ours (unchanged) or nothing.
    let expected: { size: number; mtimeMs: number } | null = existing;
    if (existing && !(record && !record.deleted && matches(existing, record))) {
      // Something here the journal does not know: the same bytes need no write, other bytes are kept aside.
      const local = await cutFile(target.absolute);
      const after = await lstatOrNull(target.absolute);
      if (after && sameBlocks(local.blocks, file.blocks) && after.size === existing.size && after.mtimeMs === existing.mtimeMs) {
        state.putFolderRecord({ path: file.path, size: after.size, mtimeMs: after.mtimeMs, blocks: file.blocks, crcs: local.crcs, inPageCache: true, sjid: file.sjid, deleted: false });
        return;
      }
      await this.keepAside(target, file.path);
      expected = null;
    }
    // Written while its blocks arrived (file-assembly.ts), or now from the block store.
    let assembled = await this.options.assembly?.take(file);
    // Made beside the target as it resolved then; if its directory resolves elsewhere now, start over here.
    if (assembled && dirname(assembled.path) !== target.parent) {
      await assembled.handle.close();
      await unlink(assembled.path).catch(() => undefined);
      assembled = null;
    }
    const temp = assembled?.path ?? join(target.parent, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const handle = assembled?.handle ?? (await open(temp, 'wx', 0o644));
    try {
      if (!(await this.fillGaps(file, handle, assembled?.written ?? new Set()))) {
        // A block of unexpected length: the 4 MiB offsets were wrong, so the file is written whole.
        await handle.truncate(0);
        await this.fillGaps(file, handle, new Set());
      }
      // A resumed temp file may be longer than the entry (changed under the daemon while it was stopped).
      await handle.truncate(file.size);
      await handle.sync();
    } catch (error) {
      await handle.close();
      await unlink(temp).catch(() => undefined);
      throw error;
    }
    await handle.close();
    const mtime = new Date(file.mtime);
    await utimes(temp, mtime, mtime);
    // What we wrote is read off the temp file: once renamed into place, the target may be
    // changed by a local program at any moment, and recording that as ours would hide the
    // change (it was then overwritten by the next remote version, unseen).
    const written = await stat(temp);
    // The blocks took a while: a local edit made since the check above is kept aside too.
    const now = await lstatOrNull(target.absolute);
    if (now && !(expected && now.size === expected.size && now.mtimeMs === expected.mtimeMs)) await this.keepAside(target, file.path);
    await rename(temp, target.absolute);
    await fsyncDir(target.parent);
    state.putFolderRecord({ path: file.path, size: written.size, mtimeMs: written.mtimeMs, blocks: file.blocks, sjid: file.sjid, deleted: false });
    log(`${record || existing ? 'updated' : 'wrote'} ${printable(file.path)} (${file.size} bytes)`);
  }

  /**
   * Writes the blocks of `file` not yet `written` at their offsets, from the block store. With
   * blocks already written at fixed 4 MiB offsets, false if a block turns out to be of another
   * length (nothing is trusted to be where it should be then).
   */
  private async fillGaps(file: FileRecord, handle: FileHandle, written: ReadonlySet<number>): Promise<boolean> {
    let offset = 0;
    for (const [i, hash] of file.blocks.entries()) {
      const expected = expectedBlockSize(file.size, file.blocks.length, i);
      if (written.has(i)) {
        offset += expected;
        continue;
      }
      const bytes = await this.options.blocks.getBlock(hash);
      if (!bytes) throw new MissingBlockError(hash, file.path);
      if (written.size > 0 && bytes.length !== expected) return false;
      await handle.write(bytes, 0, bytes.length, offset);
      offset += bytes.length;
    }
    return true;
  }

  /** Renames the local file at `target` to a conflicted-copy name beside it; the watcher uploads it as a new file. */
  private async keepAside(target: { absolute: string; parent: string }, path: FilePath): Promise<void> {
    const { root, log } = this.options;
    const names = new Set(await readdir(target.parent));
    const base = target.absolute.slice(target.parent.length + 1);
    const copy = conflictedCopyName(base, this.now(), this.host, (candidate) => names.has(candidate));
    await rename(target.absolute, join(target.parent, copy));
    log(`conflict on ${printable(path)}: kept the local version as ${printable(relative(root, join(target.parent, copy)))}`);
  }

  /** Directories emptied by deletes go too (the journal has no directories), up to the root. */
  private async pruneEmptyParents(dir: string): Promise<void> {
    while (dir !== this.options.root && dir.startsWith(`${this.options.root}/`)) {
      try {
        await rmdir(dir);
      } catch {
        return;
      }
      dir = dirname(dir);
    }
  }
}

/** A block a complete file needs is not in the block store (any more): the engine must fetch it again. */
export class MissingBlockError extends Error {
  override readonly name = 'MissingBlockError';
  constructor(
    readonly hash: BlockHash,
    path: FilePath,
  ) {
    super(`block ${hash.slice(0, 12)}… of ${printable(path)} is not stored`);
  }
}

/** The file still is what the daemon last wrote or committed there. */
export function matches(info: { size: number; mtimeMs: number }, record: FolderRecord): boolean {
  return !record.deleted && info.size === record.size && info.mtimeMs === record.mtimeMs;
}

/** Paths in log lines: JSON-quoted content, so a hostile name cannot forge a log line. */
export function printable(path: string): string {
  return JSON.stringify(path).slice(1, -1);
}
