import { CommitConflictError } from '../../src/engine/commit-conflict.ts';
import type { ConditionalCommits } from '../../src/engine/conflict-copies.ts';
import { ApiError } from '../../src/engine/server-api.ts';
import { SMALL_FILE_BATCH_BYTES, SMALL_FILE_BATCH_FILES, uploadSmallFiles } from '../../src/engine/small-file-batch.ts';
import type { FileRecord, Sha256, UploadApi } from '../../src/engine/types.ts';
import { commitWithBlocks, uploadFile } from '../../src/engine/uploader.ts';
import { describeError, isFolderWorkName, parseFilePath, unsafePathReason, type BlockHash, type FilePath, type FolderPlatform, type NamespaceId } from '../../src/protocol/index.ts';
import type { BlobBlockStore } from '../upload-queue.ts';
import { SMALL_FILE_MAX } from '../upload-queue.ts';
import { walkTrees, type FoundFile, type WalkStart } from '../folder-walk.ts';
import { fileIn, isNotFound, type FolderDirs } from './folder-dirs.ts';
import { FolderTwins } from './folder-twins.ts';
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
  /** A pass over some paths met a name only a walk of the whole folder can decide (a case or Unicode twin of a tracked file). */
  fullScanWanted?: boolean;
}

interface Changed {
  path: FilePath;
  file: File;
  parent: number;
}

/** What one pass covers: the whole folder, or the paths the folder's observer reported. */
type Scope = { all: true } | { all: false; paths: ReadonlySet<string> };

/**
 * One scan: files are looked at as the walk lists them, changed ones are uploaded in batches
 * as the batches fill, and what the walk did not find is deleted at the end. Holds the listed
 * paths (for deletions and twins) and at most one batch of opened Files: never the folder's
 * handles (each costs the browser process a few KiB until collected; see folder-walk.ts).
 */
class ScanPass {
  readonly result: ScanResult = { uploaded: 0, deleted: 0, conflicted: 0, refused: new Map(), failed: [] };
  private readonly seen = new Set<string>();
  private readonly twins: FolderTwins;
  /** Files that wait for the end of the walk to know whether a tracked twin owns their name. */
  private readonly later: string[] = [];
  private small: Changed[] = [];
  private smallBytes = 0;

  constructor(
    private readonly scanner: FolderScanner,
    private readonly options: FolderScannerOptions,
    private readonly journal: JournalSide,
  ) {
    this.twins = new FolderTwins(options.records.trackedFolds());
  }

  async take(chunk: readonly FoundFile[]): Promise<void> {
    for (const found of chunk) {
      if (found.path.endsWith('/')) throw (found as { error: unknown }).error; // A folder that cannot be listed: no deletions from a partial walk.
      this.seen.add(found.path);
      const record = this.options.records.get(found.path as FilePath);
      const twin = this.twins.check(found.path, record && !record.deleted ? record.sjid : undefined);
      if (twin === 'later') this.later.push(found.path);
      else await this.consider(found, twin?.twin ?? null);
    }
  }

  /** After the walk: the files that waited for twins, then deletions of tracked files not found in `scope`. */
  async finish(scope: Scope): Promise<ScanResult> {
    const { dirs } = this.options;
    // A pass over some paths has not listed the rest of the folder: which twin owns the name is for a full scan to say.
    if (!scope.all && this.later.length > 0) {
      this.result.fullScanWanted = true;
      this.later.length = 0;
    }
    for (const path of this.later) {
      const twin = this.twins.twinAfterWalk(path);
      if (twin !== null) {
        await this.consider({ path, error: null }, twin);
        continue;
      }
      const place = await dirs.parentOf(path, false);
      const found = place ? await fileIn(place.dir, place.name).catch((error: unknown) => ({ error })) : null;
      if (found && 'file' in found) await this.consider({ path, file: found.file }, null);
      else if (found) await this.consider({ path, error: found.error }, null);
    }
    await this.uploadSmall();
    // Deletions last: a rename's new path is in the journal before its old one goes.
    const gone: FilePath[] = [];
    for (const record of this.options.records.all()) {
      if (!this.seen.has(record.path) && inScope(record.path, scope)) gone.push(record.path);
    }
    for (const path of gone) await this.scanner.commitDeletion(path, this.journal, this.result);
    await this.options.records.flush();
    return this.result;
  }

  private async consider(found: FoundFile, twin: string | null): Promise<void> {
    const { platform, records } = this.options;
    const raw = found.path;
    const journalTwin = twin ?? this.journal.twinOf(raw);
    const reason =
      unsafePathReason(raw, platform) ??
      validationReason(raw) ??
      (journalTwin === undefined || journalTwin === null ? null : `differs only by case or Unicode form from "${journalTwin}"`);
    if (reason) {
      this.result.refused.set(raw, reason);
      return;
    }
    const path = raw as FilePath;
    if ('error' in found) {
      this.result.failed.push({ path, error: describeError(found.error) });
      return;
    }
    const { file } = found;
    const record = records.get(path);
    if (matchesRecord(file, record)) return;
    const live = this.journal.file(path);
    // The journal moved on since this version was written here: the writer keeps both.
    if (live && (!record || live.sjid > record.sjid)) return;
    const changed = { path, file, parent: record && !record.deleted ? record.sjid : 0 };
    if (file.size > SMALL_FILE_MAX) {
      await this.scanner.uploadLarge(changed, this.journal, this.result);
      return;
    }
    if (this.small.length === SMALL_FILE_BATCH_FILES || (this.small.length > 0 && this.smallBytes + file.size > SMALL_FILE_BATCH_BYTES)) await this.uploadSmall();
    this.small.push(changed);
    this.smallBytes += file.size;
  }

  private async uploadSmall(): Promise<void> {
    if (this.small.length === 0) return;
    const batch = this.small;
    this.small = [];
    this.smallBytes = 0;
    await this.scanner.uploadSmall(batch, this.journal, this.result);
  }
}

/** Whether `path` is one of the scope's paths or below one (its ancestors looked up: a scope may hold 1,000 paths, the records 100,000). */
function inScope(path: string, scope: Scope): boolean {
  if (scope.all) return true;
  for (let end = path.length; end > 0; end = path.lastIndexOf('/', end - 1)) {
    if (scope.paths.has(path.slice(0, end))) return true;
  }
  return false;
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

  /** The whole folder, walked in bounded chunks (folder-walk.ts). */
  async scan(journal: JournalSide): Promise<ScanResult> {
    const pass = new ScanPass(this, this.options, journal);
    for await (const chunk of walkTrees([{ handle: this.options.dirs.root, path: '' }], isFolderWorkName)) await pass.take(chunk);
    return pass.finish({ all: true });
  }

  /**
   * Only `paths` (files or folders the folder's observer reported as changed, appeared, gone
   * or moved): a file is looked at, a folder walked, a path that is gone deletes what folder
   * sync tracked there. Twins are checked against the tracked files and the paths walked
   * here (a full scan checks them against every file).
   */
  async scanPaths(journal: JournalSide, paths: readonly string[]): Promise<ScanResult> {
    const { dirs } = this.options;
    // The folder itself gone or out of reach reads as every reported path gone: fail instead.
    await dirs.root.keys().next();
    const pass = new ScanPass(this, this.options, journal);
    const folders: WalkStart[] = [];
    const covered: string[] = [];
    for (const path of outermost(paths)) {
      if (path.split('/').some(isFolderWorkName)) continue;
      covered.push(path);
      const place = await dirs.parentOf(path, false);
      if (!place) continue; // Its folder is gone: deleted below.
      const found = await fileIn(place.dir, place.name).catch((error: unknown) => (isTypeMismatch(error) ? null : { error }));
      if (found && 'file' in found) await pass.take([{ path, file: found.file }]);
      else if (found) await pass.take([{ path, error: found.error }]);
      else {
        const folder = await place.dir.getDirectoryHandle(place.name).catch((error: unknown) => (isNotFound(error) ? null : Promise.reject(error)));
        if (folder) folders.push({ handle: folder, path });
      }
    }
    for await (const chunk of walkTrees(folders, isFolderWorkName)) await pass.take(chunk);
    return pass.finish({ all: false, paths: new Set(covered) });
  }

  private conditions(batch: readonly Changed[]): ConditionalCommits {
    const parents = new Map(batch.map((changed) => [changed.path, changed.parent]));
    return { device: this.options.device, parentOf: (path) => parents.get(path) ?? 0 };
  }

  async uploadSmall(batch: Changed[], journal: JournalSide, result: ScanResult): Promise<void> {
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

  async uploadLarge(changed: Changed, journal: JournalSide, result: ScanResult): Promise<void> {
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
  async commitDeletion(path: FilePath, journal: JournalSide, result: ScanResult): Promise<void> {
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

/** The paths not below another of them (a folder's walk covers its files). */
function outermost(paths: readonly string[]): string[] {
  const unique = [...new Set(paths)].sort();
  return unique.filter((path) => !unique.some((other) => other !== path && path.startsWith(`${other}/`)));
}

function isTypeMismatch(error: unknown): boolean {
  return error instanceof DOMException && error.name === 'TypeMismatchError';
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
