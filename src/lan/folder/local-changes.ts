import type { Dirent } from 'node:fs';
import { lstat, readdir, unlink } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { CommitConflictError } from '../../engine/commit-conflict.ts';
import type { FileRecord, LocalBlockStore, UploadApi } from '../../engine/types.ts';
import { parseFilePath, type BlockHash, type FilePath, type NamespaceId } from '../../protocol/index.ts';
import { FolderCommitBatch } from './commit-batch.ts';
import type { SqliteStateStore } from '../store/sqlite-state-store.ts';
import { cutFile, sameBlocks } from './file-blocks.ts';
import { matches, printable } from './materialiser.ts';
import { isTempName } from './safe-path.ts';

export interface LocalChangesOptions {
  ns: NamespaceId;
  root: string;
  api: UploadApi;
  state: SqliteStateStore;
  /** Where cut blocks are kept until committed (the folder-mode block store). */
  blocks: LocalBlockStore;
  /** The engine's live entry for a path, and how far it has read the journal. */
  liveFile: (path: FilePath) => FileRecord | undefined;
  cursor: () => number;
  /** A file was committed with these blocks (all stored here), before the engine reads its entry. */
  onCommitted?: (sjid: number, blocks: readonly BlockHash[]) => void;
  /** A temp file still in use (a file being assembled, perhaps resumed from a killed run): never removed. */
  tempInUse?: (absolute: string) => boolean;
  log: (line: string) => void;
}

/**
 * Finds what changed in the folder since the daemon last wrote or committed it, and
 * commits it: new and edited files are cut into blocks, kept locally, uploaded where the
 * server lacks them and committed; vanished files are committed as deletions. Both go in
 * batches (`commit-batch.ts`: batch uploads, up to 1,000 commits a request). A rename is
 * the two (the new path's blocks are already on the server, so nothing is sent again).
 * A path whose journal entry moved on since the local version was based on it is left to
 * the materialiser, which keeps both versions. Every commit names the entry the local
 * version was based on as its `parent`, so a remote version committed after the engine last
 * read the journal is not overwritten either: the server answers 409 conflict, nothing is
 * committed, and the materialiser keeps both once the engine reads that version.
 */
export class LocalChanges {
  private readonly warned = new Set<string>();
  /** Blocks of files cut and queued, until their batch is committed: the block GC must leave them. */
  private readonly inProgress = new Set<BlockHash>();
  private readonly startedAt = Date.now();

  constructor(private readonly options: LocalChangesOptions) {}

  /** Whether `hash` belongs to a local file on its way to a commit. */
  isUploading(hash: BlockHash): boolean {
    return this.inProgress.has(hash);
  }

  async scan(): Promise<void> {
    const { ns, api, blocks } = this.options;
    const batch = new FolderCommitBatch({ ns, api, blocks, settleTogether: (settleAll) => this.options.state.inOneTransaction(settleAll) });
    const send = async () => {
      try {
        await batch.flush();
      } finally {
        this.inProgress.clear();
      }
    };
    try {
      const seen = new Set<FilePath>();
      for await (const { path, absolute } of this.walk(this.options.root, '')) {
        seen.add(path);
        await this.queueIfChanged(path, absolute, batch);
        if (batch.full) await send();
      }
      for (const record of this.options.state.folderRecords()) {
        if (seen.has(record.path)) continue;
        this.queueIfDeleted(record.path, batch);
        if (batch.full) await send();
      }
      await send();
    } finally {
      this.inProgress.clear();
    }
  }

  /** Cuts a new or changed file into blocks (kept here) and queues its commit. */
  private async queueIfChanged(path: FilePath, absolute: string, batch: FolderCommitBatch): Promise<void> {
    const { state, log } = this.options;
    const before = await lstat(absolute).catch(() => null);
    if (!before || !before.isFile()) return;
    const record = state.folderRecord(path);
    if (record && matches(before, record)) return;
    // The journal has a version this file was not based on: the materialiser decides (conflict or same bytes).
    if (this.remoteMovedOn(path, record?.sjid)) return;

    const { blocks, crcs, size } = await cutFile(absolute, (hash, bytes) => {
      this.inProgress.add(hash);
      return this.options.blocks.putBlock(hash, bytes);
    });
    const after = await lstat(absolute).catch(() => null);
    if (!after || after.size !== before.size || after.mtimeMs !== before.mtimeMs || size !== before.size) {
      return; // Still being written: the watcher or the next rescan comes back to it.
    }
    if (record && !record.deleted && sameBlocks(record.blocks, blocks)) {
      state.putFolderRecord({ ...record, size, mtimeMs: after.mtimeMs, crcs, inPageCache: true });
      return;
    }
    // Based on what the daemon last wrote or committed here; a path it deleted, or never had, must not be live.
    const parent = record && !record.deleted ? record.sjid : 0;
    batch.add({
      request: { path, size, mtime: Math.max(0, Math.floor(after.mtimeMs)), blocks, deleted: false, parent },
      // Checked again: a remote version may have arrived while the blocks went up. One the
      // engine has not read yet is caught by the server (parent).
      stillWanted: () => !this.remoteMovedOn(path, record?.sjid),
      settle: (outcome) => {
        if (outcome.status === 'committed') {
          state.putFolderRecord({ path, size, mtimeMs: after.mtimeMs, blocks, crcs, inPageCache: true, sjid: outcome.sjid, deleted: false });
          this.options.onCommitted?.(outcome.sjid, blocks);
          log(`uploaded ${printable(path)} (${size} bytes, entry ${outcome.sjid})`);
        } else if (outcome.status === 'conflict') {
          // The materialiser settles it once the engine reads the entry: a newer version makes the
          // local one a conflicted copy; a deletion leaves the local file to be uploaded as new.
          const next = outcome.error.current === null ? 'it will be uploaded again as a new file' : 'it will be kept as a conflicted copy';
          log(`conflict on ${printable(path)}: ${conflictDescription(outcome.error)}; the local version is not committed now, ${next}`);
        }
      },
    });
  }

  private remoteMovedOn(path: FilePath, basedOn: number | undefined): boolean {
    const live = this.options.liveFile(path);
    return live !== undefined && (basedOn === undefined || live.sjid > basedOn);
  }

  /** Queues the deletion of a file the folder no longer has, unless the journal moved on. */
  private queueIfDeleted(path: FilePath, batch: FolderCommitBatch): void {
    const { state, log } = this.options;
    const record = state.folderRecord(path);
    if (!record) return;
    if (record.deleted) {
      // Our deletion: forget it once the engine has read past it.
      if (this.options.cursor() >= record.sjid) state.deleteFolderRecord(path);
      return;
    }
    const live = this.options.liveFile(path);
    if (live && live.sjid > record.sjid) return; // A newer remote version wins over the local delete.
    if (!live && this.options.cursor() >= record.sjid) {
      state.deleteFolderRecord(path);
      return;
    }
    batch.add({
      request: { path, size: 0, mtime: Date.now(), blocks: [], deleted: true, parent: record.sjid },
      settle: (outcome) => {
        if (outcome.status === 'committed') {
          state.putFolderRecord({ ...record, sjid: outcome.sjid, deleted: true });
          log(`deleted ${printable(path)} on the server (entry ${outcome.sjid})`);
        } else if (outcome.status === 'conflict' && outcome.error.current !== null) {
          // Changed elsewhere since this copy was written: that version wins over the local delete (the materialiser writes it back).
          log(`not deleting ${printable(path)} on the server: ${conflictDescription(outcome.error)}`);
        } else if (outcome.status !== 'dropped') {
          // Deleted already (conflict with nothing live, or not_live from a server without conditional commits).
          state.deleteFolderRecord(path);
        }
      },
    });
  }

  /**
   * A temp file last changed before this daemon started, and not resumed by it, is what an
   * earlier run was writing for an entry since replaced: never a file of the folder.
   * Its status change time, since the materialiser sets a temp's mtime to the entry's.
   */
  private async removeLeftoverTemp(absolute: string): Promise<void> {
    const info = await lstat(absolute).catch(() => null);
    if (!info?.isFile() || info.ctimeMs >= this.startedAt || this.options.tempInUse?.(absolute)) return;
    await unlink(absolute).catch(() => undefined);
    this.options.log(`removed ${printable(relative(this.options.root, absolute))}, left behind by a run that stopped mid-file`);
  }

  /** Regular files under `dir`; symlinks, temp files and names the protocol refuses are skipped. */
  private async *walk(dir: string, prefix: string): AsyncGenerator<{ path: FilePath; absolute: string }> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const entry of entries) {
      if (isTempName(entry.name)) {
        if (entry.isFile()) await this.removeLeftoverTemp(join(dir, entry.name));
        continue;
      }
      const relative = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      const absolute = join(dir, entry.name);
      if (entry.isDirectory()) {
        yield* this.walk(absolute, relative);
      } else if (entry.isFile()) {
        let path: FilePath;
        try {
          path = parseFilePath(relative);
        } catch (error) {
          this.warnOnce(relative, `not synced: "${printable(relative)}" ${(error as Error).message}`);
          continue;
        }
        yield { path, absolute };
      } else if (entry.isSymbolicLink()) {
        this.warnOnce(relative, `not synced: "${printable(relative)}" is a symlink`);
      }
    }
  }

  private warnOnce(key: string, line: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.options.log(line);
  }
}

function conflictDescription(error: CommitConflictError): string {
  if (error.current === null) return 'it was deleted on the server';
  const by = error.current.device === null ? '' : ` by ${printable(error.current.device)}`;
  return `the server has a newer version (entry ${error.current.sjid}${by})`;
}
