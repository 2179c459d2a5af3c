import { CommitConflictError } from '../../src/engine/commit-conflict.ts';
import type { ConditionalCommits } from '../../src/engine/conflict-copies.ts';
import { ApiError } from '../../src/engine/server-api.ts';
import { SMALL_FILE_BATCH_BYTES, SMALL_FILE_BATCH_FILES, uploadSmallFiles } from '../../src/engine/small-file-batch.ts';
import type { FileRecord, Sha256, UploadApi } from '../../src/engine/types.ts';
import { commitWithBlocks, uploadFile } from '../../src/engine/uploader.ts';
import { describeError, foldTwins, parseFilePath, unsafePathReason, type BlockHash, type FilePath, type FolderPlatform, type NamespaceId } from '../../src/protocol/index.ts';
import type { BlobBlockStore } from '../upload-queue.ts';
import { SMALL_FILE_MAX } from '../upload-queue.ts';
import { walkFolder, type FolderDirs } from './folder-dirs.ts';
import { matchesRecord, type FolderRecords } from './folder-records.ts';

/** What the folder scan needs of the running sync engine. */
export interface JournalSide {
  /** The live entry this device knows for `path`. */
  file(path: string): FileRecord | undefined;
  /** How far the engine has read the journal. */
  readonly cursor: number;
  /** Blocks this device now stores (uploaded from the folder): the engine need not fetch them. */
  noteStoredBlocks(hashes: readonly BlockHash[]): void;
  /** The journal's live path that `path` differs from only by case or Unicode form, if any. */
  twinOf(path: string): string | undefined;
}

export interface FolderScannerOptions {
  ns: NamespaceId;
  dirs: FolderDirs;
  records: FolderRecords;
  api: UploadApi;
  blocks: BlobBlockStore;
  sha256: Sha256;
  device: string;
  platform: FolderPlatform;
}

export interface ScanResult {
  uploaded: number;
  deleted: number;
  /** Conflicted copies this scan committed (the journal's version held the path). */
  conflicted: number;
  /** Names in the folder that are not synced, and why. */
  refused: Map<string, string>;
  /** Files that could not be read or committed now (tried again next scan). */
  failed: { path: string; error: string }[];
}

interface Changed {
  path: FilePath;
  file: File;
  parent: number;
}

/**
 * Folder → journal. Walks the folder and compares each file's size and lastModified with
 * what folder sync last wrote or committed there: new and edited files are uploaded and
 * committed, files gone from the folder are committed as deletions. A rename is the two
 * (content-addressed blocks: the new path's blocks are on the server already). Every commit
 * names as its parent the entry the folder's version was based on, so a version committed
 * elsewhere meanwhile is never replaced: the server answers 409 and the local version goes
 * in as a conflicted copy. A path whose journal entry moved on since the folder's version was
 * written is left to the writer, which keeps the folder's version aside as a conflicted copy.
 */
export class FolderScanner {
  constructor(private readonly options: FolderScannerOptions) {}

  async scan(journal: JournalSide): Promise<ScanResult> {
    const { records, platform } = this.options;
    const result: ScanResult = { uploaded: 0, deleted: 0, conflicted: 0, refused: new Map(), failed: [] };
    const seen = new Set<string>();
    const small: Changed[] = [];
    const large: Changed[] = [];
    const listed: { path: string; order: number; handle: FileSystemFileHandle }[] = [];
    for await (const { path, handle } of walkFolder(this.options.dirs.root)) {
      seen.add(path);
      // Files folder sync already tracks own their name against a new twin.
      const record = records.get(path as FilePath);
      listed.push({ path, order: record && !record.deleted ? record.sjid : Number.MAX_SAFE_INTEGER - listed.length, handle });
    }
    const twins = foldTwins(listed);
    for (const { path: raw, handle } of listed) {
      const twin = twins.get(raw) ?? journal.twinOf(raw);
      const reason =
        unsafePathReason(raw, platform) ??
        validationReason(raw) ??
        (twin === undefined ? null : `differs only by case or Unicode form from "${twin}"`);
      if (reason) {
        result.refused.set(raw, reason);
        continue;
      }
      const path = raw as FilePath;
      let file: File;
      try {
        file = await handle.getFile();
      } catch (error) {
        result.failed.push({ path, error: describeError(error) });
        continue;
      }
      const record = records.get(path);
      if (matchesRecord(file, record)) continue;
      const live = journal.file(path);
      // The journal moved on since this version was written here: the writer keeps both.
      if (live && (!record || live.sjid > record.sjid)) continue;
      const parent = record && !record.deleted ? record.sjid : 0;
      (file.size <= SMALL_FILE_MAX ? small : large).push({ path, file, parent });
    }
    for (const batch of batches(small)) await this.uploadSmall(batch, journal, result);
    for (const changed of large) await this.uploadLarge(changed, journal, result);
    // Deletions last: a rename's new path is in the journal before its old one goes.
    for (const record of [...records.all()]) {
      if (!seen.has(record.path)) await this.commitDeletion(record.path, journal, result);
    }
    await records.flush();
    return result;
  }

  private conditions(batch: readonly Changed[]): ConditionalCommits {
    const parents = new Map(batch.map((changed) => [changed.path, changed.parent]));
    return { device: this.options.device, parentOf: (path) => parents.get(path) ?? 0 };
  }

  private async uploadSmall(batch: Changed[], journal: JournalSide, result: ScanResult): Promise<void> {
    const { ns, api, blocks, sha256, records } = this.options;
    const hashes: BlockHash[] = [];
    const conflicted = new Set<number>();
    let sjids: (number | null)[];
    try {
      sjids = await uploadSmallFiles(
        batch.map(({ path, file }) => ({ path, mtime: mtimeOf(file), size: file.size, read: async () => new Uint8Array(await file.arrayBuffer()) })),
        {
          ns,
          api,
          blocks,
          sha256: async (bytes) => {
            const hash = await sha256(bytes);
            hashes.push(hash);
            return hash;
          },
          conditions: this.conditions(batch),
          onConflictedCopy: (index) => conflicted.add(index),
          // Changed or gone since it was listed: the next scan sees it as it is then.
          onUnreadable: (index, error) => result.failed.push({ path: batch[index].path, error: describeError(error) }),
        },
      );
    } catch (error) {
      for (const { path } of batch) result.failed.push({ path, error: describeError(error) });
      return;
    }
    journal.noteStoredBlocks(hashes);
    for (let i = 0; i < batch.length; i++) {
      const sjid = sjids[i];
      if (sjid === null) continue;
      const { path, file } = batch[i];
      await this.committed(path, file, conflicted.has(i) ? 0 : sjid, result);
      if (conflicted.has(i)) result.conflicted += 1;
    }
    await records.flush();
  }

  private async uploadLarge(changed: Changed, journal: JournalSide, result: ScanResult): Promise<void> {
    const { ns, api, blocks, sha256 } = this.options;
    try {
      const landed = await uploadFile({
        ns,
        path: changed.path,
        mtime: mtimeOf(changed.file),
        stream: changed.file.stream(),
        api,
        blocks,
        sha256,
        conditions: this.conditions([changed]),
      });
      journal.noteStoredBlocks(landed.blocks);
      await this.committed(changed.path, changed.file, landed.conflicted ? 0 : landed.sjid, result);
      if (landed.conflicted) result.conflicted += 1;
    } catch (error) {
      result.failed.push({ path: changed.path, error: describeError(error) });
    }
  }

  /**
   * The folder's version is in the journal: at `sjid`, or (0) as a conflicted copy, which
   * leaves the path's file free for the journal's version.
   */
  private async committed(path: FilePath, file: File, sjid: number, result: ScanResult): Promise<void> {
    await this.options.records.put({ path, size: file.size, lastModified: file.lastModified, sjid, deleted: false });
    result.uploaded += 1;
  }

  /** `path` is gone from the folder: delete it from the journal if the journal still has the version that was here. */
  private async commitDeletion(path: FilePath, journal: JournalSide, result: ScanResult): Promise<void> {
    const { records, ns, api, blocks } = this.options;
    const record = records.get(path);
    if (!record) return;
    const live = journal.file(path);
    if (record.deleted) {
      // This device's deletion: forgotten once the engine has read past it.
      if (!live && journal.cursor >= record.sjid) await records.remove(path);
      return;
    }
    // Copied into the journal under another name, or the journal has a newer version (the writer brings it back).
    if (record.sjid === 0 || (live && live.sjid > record.sjid)) {
      if (record.sjid === 0) await records.remove(path);
      return;
    }
    if (!live && journal.cursor >= record.sjid) {
      await records.remove(path);
      return;
    }
    try {
      const sjid = await commitWithBlocks(ns, { path, size: 0, mtime: Date.now(), blocks: [], deleted: true, parent: record.sjid }, api, blocks);
      await records.put({ ...record, sjid, deleted: true });
      result.deleted += 1;
    } catch (error) {
      if (error instanceof CommitConflictError && error.current !== null) return; // Changed elsewhere: that version comes back.
      if (error instanceof CommitConflictError || (error instanceof ApiError && error.code === 'not_live')) {
        await records.remove(path);
        return;
      }
      result.failed.push({ path, error: describeError(error) });
    }
  }
}

/** Small files in groups the batch commit takes. */
function* batches(files: Changed[]): Generator<Changed[]> {
  let batch: Changed[] = [];
  let bytes = 0;
  for (const changed of files) {
    if (batch.length === SMALL_FILE_BATCH_FILES || (batch.length > 0 && bytes + changed.file.size > SMALL_FILE_BATCH_BYTES)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(changed);
    bytes += changed.file.size;
  }
  if (batch.length > 0) yield batch;
}

function validationReason(path: string): string | null {
  try {
    parseFilePath(path);
    return null;
  } catch (error) {
    return `the workspace cannot hold this name: it ${(error as Error).message.replace(/^path: /, '')}`;
  }
}

function mtimeOf(file: File): number {
  return Math.max(0, Math.floor(file.lastModified));
}
