import { SMALL_FILE_BATCH_BYTES, SMALL_FILE_BATCH_FILES, uploadSmallFiles } from '../src/engine/small-file-batch.ts';
import { uploadFile } from '../src/engine/uploader.ts';
import { blobBlocks } from '../src/engine/chunker.ts';
import { readBodyInto } from '../src/engine/block-buffers.ts';
import { keepFromSource, type SourceSlice } from '../src/engine/keep-from-source.ts';
import type { LocalBlockStore, Sha256, UploadApi } from '../src/engine/types.ts';
import { MAX_BLOCK_SIZE, describeError, normaliseUserPath, type BlockHash, type FilePath, type NamespaceId } from '../src/protocol/index.ts';
import type { FoundFile } from './folder-walk.ts';
import type { UploadInput, UploadPart, UploadTotals, UploadView } from './sync-api.ts';
import { UploadParents } from './upload-parents.ts';
import { blockBuffers } from './block-buffers.ts';

/** The device's block store, which can also hand out a stored block as a disk-backed Blob. */
export interface BlobBlockStore extends LocalBlockStore {
  getBlob(hash: BlockHash): Promise<Blob | undefined>;
}

export interface UploadQueueOptions {
  ns: NamespaceId;
  api: UploadApi;
  /** This browser's label (the server records it; conflicted copies are named after it). */
  device: string;
  /**
   * The live sjid this device knows for each of `paths` (absent: not live), in one read: an
   * upload names it as the version it replaces, and one that lost its path is kept as a
   * conflicted copy. One lookup per drop, not per file (a follower tab reads the whole table).
   */
  knownSjids(paths: readonly FilePath[]): Promise<ReadonlyMap<FilePath, number>>;
  blocks: BlobBlockStore;
  sha256: Sha256;
  /** `settled`: an upload finished or failed (a result someone waits for, not progress). */
  onChange: (settled?: boolean) => void;
  /** Uploads committed; their blocks are stored on this device. */
  onCommitted: (hashes: BlockHash[]) => void;
  /** Large files uploading at once; each also pipelines its own blocks. */
  parallelFiles?: number;
  /**
   * Large files are kept on this device after their upload, from the picked File (see
   * `keepLater`), when this gives hooks for the file (asked as each starts): `keeps(path)`
   * says whether this device keeps the path at all (an online-only folder's uploads are not
   * kept), `begin` is told the blocks about to be kept before the commit (the engine does not
   * fetch them meanwhile), `end` which were stored. Null or absent: kept while it uploads.
   */
  keepAfterUpload?: () => KeepAfterUpload | null;
}

export interface KeepAfterUpload {
  keeps(path: FilePath): Promise<boolean>;
  begin(hashes: readonly BlockHash[]): void;
  end(hashes: readonly BlockHash[], stored: readonly BlockHash[]): void;
}

/** Files up to this size go up in batches (one block each, committed together). */
export const SMALL_FILE_MAX = 256 * 1024;
/** What the page is shown: the running uploads plus this many waiting, finished and failed. */
const SHOW_QUEUED = 20;
/** How long a half-full batch waits for the next part of a drop before it goes anyway. */
const PART_WAIT_MS = 1_000;
/**
 * A folder walk runs ahead of the uploads by at most this many small files (two batches) and
 * this many large ones: it holds a file handle and an opened File per file, not bytes.
 */
const AHEAD_SMALL = 2 * SMALL_FILE_BATCH_FILES;
const AHEAD_LARGE = 8;
/** Running uploads shown: a batch of small files runs a thousand at once. */
const SHOW_RUNNING = 20;
const KEEP_FINISHED = 100;
const KEEP_FAILED = 200;

interface Queued {
  view: UploadView;
  file: File;
  path: FilePath;
  /**
   * The live entry this device knew for the path when the user added the file: the version
   * the upload replaces. Taken then, not at commit time, so a version another device commits
   * while this one waits or uploads is not silently replaced: it meets a conflict instead.
   */
  parent: Promise<number>;
}

/**
 * The uploads of one workspace in this tab. Large files go a couple at a time, each read as a
 * stream; small files go in batches (one missing-blocks question, the missing blocks, one batch
 * commit), so a folder of 100,000 files is a few hundred round trips. Memory stays bounded:
 * File handles wait, not bytes, and the page is sent the running uploads and a bounded tail
 * of the rest, with totals for everything.
 */
export class UploadQueue {
  private readonly large: Queued[] = [];
  private readonly small: Queued[] = [];
  private readonly running = new Set<UploadView>();
  private finished: UploadView[] = [];
  private failed: UploadView[] = [];
  private totals: UploadTotals = emptyTotals();
  private runningLarge = 0;
  private batchRunning = false;
  private nextId = 1;
  private readonly parents = new UploadParents();
  /** Local copies still to keep after their upload, one file at a time (keepAfterUpload). */
  private keeping: Promise<void> = Promise.resolve();
  /** Files a drop sent in parts has announced and not yet handed over, and when the last part came. */
  private filesOwed = 0;
  private lastPartAt = 0;
  private partWait: ReturnType<typeof setTimeout> | null = null;
  /** Folder walks still finding files, oldest first; the queue pulls from the first. */
  private readonly sources: AsyncIterator<FoundFile[]>[] = [];
  private pulling = false;

  /**
   * The server API, but block bodies are the stored blocks' disk-backed Files: a Blob made
   * from the bytes would sit in Chromium's browser process until the worker's garbage
   * collector got round to it (measured, on-disk profile: +246 MiB browser RSS uploading a
   * 1 GiB file with such bodies and Blob values; 0 with stored Files).
   */
  private readonly sendingStoredCopies: UploadApi;

  constructor(private readonly options: UploadQueueOptions) {
    const { api, blocks } = options;
    this.sendingStoredCopies = {
      missingBlocks: (hashes) => api.missingBlocks(hashes),
      commit: (ns, request) => api.commit(ns, request),
      commitBatch: (ns, requests) => api.commitBatch(ns, requests),
      // A Blob body is already disk-backed (a slice of the picked File): sent as it is.
      putBlock: async (hash, body) => api.putBlock(hash, body instanceof Blob ? body : ((await blocks.getBlob(hash)) ?? body)),
      // Batches carry only small blocks (a 409's need list), sent as bytes.
      ...(api.putBlocks ? { putBlocks: (batch) => api.putBlocks!(batch) } : {}),
      ...(api.putUnnamedBlock ? { putUnnamedBlock: (body) => api.putUnnamedBlock!(body) } : {}),
    };
  }

  list(): UploadView[] {
    const queued = [...this.large.slice(0, SHOW_QUEUED), ...this.small.slice(0, SHOW_QUEUED)].map((entry) => entry.view);
    const running: UploadView[] = [];
    for (const view of this.running) {
      if (running.length === SHOW_RUNNING) break;
      running.push(view);
    }
    return [...this.failed, ...this.finished, ...running, ...queued].map((view) => ({ ...view }));
  }

  summary(): UploadTotals {
    return { ...this.totals, counting: this.sources.length > 0 };
  }

  /**
   * Queues the files of a folder walk as the queue makes room for them (`walkFolders`), so
   * the walk stays a bounded distance ahead. The totals grow as files are found; `counting`
   * says the walk is still going.
   */
  addWalk(walk: AsyncIterable<FoundFile[]>): void {
    if (this.idle()) {
      this.totals = emptyTotals();
      this.parents.clear();
    }
    this.sources.push(walk[Symbol.asyncIterator]());
    this.options.onChange();
    this.pull();
  }

  private pull(): void {
    if (this.pulling || this.sources.length === 0) return;
    if (this.small.length >= AHEAD_SMALL || this.large.length >= AHEAD_LARGE) return;
    this.pulling = true;
    const source = this.sources[0];
    source.next().then(
      (next) => {
        this.pulling = false;
        this.lastPartAt = performance.now();
        if (next.done) this.sources.shift();
        else this.addFound(next.value);
        if (next.done) this.options.onChange();
        this.pull();
        this.drain();
      },
      (error: unknown) => {
        this.pulling = false;
        this.sources.shift();
        this.totals.files += 1;
        this.fail(this.newView('(folder)', 0), new Error(`could not read the folder: ${messageOf(error)}`));
        this.pull();
        this.drain();
      },
    );
  }

  private addFound(found: FoundFile[]): void {
    const files: UploadInput[] = [];
    for (const item of found) {
      if ('file' in item) {
        files.push(item);
      } else {
        this.totals.files += 1;
        this.fail(this.newView(item.path, 0), new Error(`could not read it: ${messageOf(item.error)}`));
      }
    }
    this.add(files);
  }

  private newView(path: string, size: number): UploadView {
    return { id: this.nextId++, path, size, bytesHashed: 0, bytesUploaded: 0, state: 'queued' };
  }

  /**
   * Queues files. `part`: one of several calls carrying one drop; the first counts the whole
   * drop's files into the totals (the queue may run dry between parts, and the totals still
   * belong to the drop); bytes count as each part arrives.
   */
  add(inputs: UploadInput[], part?: UploadPart): void {
    if (this.idle() && (!part || part.first)) {
      this.totals = emptyTotals();
      this.parents.clear();
    }
    if (part?.first) {
      this.totals.files += part.drop.files;
      this.filesOwed += part.drop.files;
    }
    if (part) {
      this.filesOwed = Math.max(0, this.filesOwed - inputs.length);
      this.lastPartAt = performance.now();
    }
    const accepted: { view: UploadView; file: File; path: FilePath }[] = [];
    for (const { file, path } of inputs) {
      const view = this.newView(path, file.size);
      if (!part) this.totals.files += 1;
      this.totals.bytes += file.size;
      try {
        accepted.push({ view, file, path: normaliseUserPath(path) });
      } catch (error) {
        this.fail(view, error);
      }
    }
    const known = accepted.length === 0 ? Promise.resolve(new Map<FilePath, number>()) : this.options.knownSjids(accepted.map((item) => item.path));
    known.catch(() => {}); // A failed lookup fails each upload when its commit awaits it.
    for (const item of accepted) {
      const parent = known.then((sjids) => sjids.get(item.path) ?? 0);
      parent.catch(() => {});
      (item.file.size <= SMALL_FILE_MAX ? this.small : this.large).push({ ...item, parent });
    }
    this.options.onChange();
    this.drain();
  }

  private idle(): boolean {
    return this.sources.length === 0 && this.running.size === 0 && this.large.length === 0 && this.small.length === 0;
  }

  private drain(): void {
    this.pull();
    const parallel = this.options.parallelFiles ?? 2;
    while (this.runningLarge < parallel && this.large.length > 0) {
      const next = this.large.shift()!;
      this.runningLarge += 1;
      void this.runLarge(next).finally(() => {
        this.runningLarge -= 1;
        this.drain();
      });
    }
    if (!this.batchRunning && this.small.length > 0 && !this.waitForMoreParts()) {
      this.batchRunning = true;
      void this.runBatch(this.takeBatch()).finally(() => {
        this.batchRunning = false;
        this.drain();
      });
    }
  }

  /**
   * While a drop's parts are still arriving, a batch waits until it is full (rather than
   * committing the first few dozen files on their own), unless the parts stop coming.
   */
  private waitForMoreParts(): boolean {
    if (this.filesOwed === 0 && this.sources.length === 0) return false;
    const sinceLastPart = performance.now() - this.lastPartAt;
    if (sinceLastPart >= PART_WAIT_MS) return false;
    let bytes = 0;
    for (let i = 0; i < this.small.length && i < SMALL_FILE_BATCH_FILES; i++) bytes += this.small[i].file.size;
    if (this.small.length >= SMALL_FILE_BATCH_FILES || bytes >= SMALL_FILE_BATCH_BYTES) return false;
    this.partWait ??= setTimeout(() => {
      this.partWait = null;
      this.drain();
    }, PART_WAIT_MS - sinceLastPart);
    return true;
  }

  private takeBatch(): Queued[] {
    const batch: Queued[] = [];
    let bytes = 0;
    const paths = new Set<FilePath>();
    while (this.small.length > 0 && batch.length < SMALL_FILE_BATCH_FILES) {
      const size = this.small[0].file.size;
      if (batch.length > 0 && bytes + size > SMALL_FILE_BATCH_BYTES) break;
      // A path's second upload goes in the next batch, based on the first (UploadParents),
      // rather than conflicting with it inside one commit.
      if (paths.has(this.small[0].path)) break;
      paths.add(this.small[0].path);
      batch.push(this.small.shift()!);
      bytes += size;
    }
    return batch;
  }

  private async runLarge({ view, file, path, parent }: Queued): Promise<void> {
    this.start(view);
    let parentSent = 0;
    const keepAfter = this.options.keepAfterUpload?.() ?? null;
    let announced: readonly BlockHash[] = [];
    try {
      // A path new to the workspace is sent unread, for the server to name its blocks (one read
      // of the file instead of two); a new version of a known path is hashed first, so only
      // the blocks the server lacks are sent.
      const isNewPath = keepAfter !== null && (await parent.catch(() => -1)) === 0 && this.parents.resolve(path, 0) === 0;
      const result = await uploadFile({
        ns: this.options.ns,
        path,
        mtime: mtimeOf(file),
        stream: blobBlocks(file, MAX_BLOCK_SIZE, undefined, blockBuffers),
        doneWith: (block) => blockBuffers.give(block),
        bodyOf: (offset, length) => file.slice(offset, offset + length),
        ...(isNewPath ? { unreadSize: file.size } : {}),
        api: this.sendingStoredCopies,
        blocks: this.options.blocks,
        sha256: this.options.sha256,
        conditions: { device: this.options.device, parentOf: async () => (parentSent = this.parents.resolve(path, await parent)) },
        ...(keepAfter ? { keepLater: (hashes: readonly BlockHash[]) => keepAfter.begin((announced = hashes)) } : {}),
        onProgress: (progress) => {
          this.totals.bytesUploaded += progress.bytesUploaded - view.bytesUploaded;
          view.bytesHashed = progress.bytesHashed;
          view.bytesUploaded = progress.bytesUploaded;
          view.state = progress.phase;
          this.options.onChange();
        },
      });
      view.size = result.size;
      if (result.conflicted) view.conflictedCopy = result.path;
      else this.parents.committed(path, parentSent, result.sjid);
      this.succeed(view);
      if (keepAfter) {
        announced = [];
        this.keepLater(file, path, result.slices, keepAfter);
      } else this.options.onCommitted(result.blocks);
    } catch (error) {
      this.fail(view, error);
      // Nothing will be kept: the engine fetches what it wants of them as usual.
      if (keepAfter && announced.length > 0) keepAfter.end(announced, []);
    }
  }

  /**
   * Stores an uploaded file's blocks on this device from the File, after the uploads before
   * it were kept: the upload is done already (the server has every block and the commit), so
   * a tab closed meanwhile loses nothing; the blocks are then fetched like any missing ones.
   */
  private keepLater(file: File, path: FilePath, slices: SourceSlice[], keepAfter: KeepAfterUpload): void {
    const hashes = slices.map((slice) => slice.hash);
    this.keeping = this.keeping.then(async () => {
      let stored: BlockHash[] = [];
      try {
        if (await keepAfter.keeps(path)) {
          // Into a pooled buffer the store's putVerified hashes and writes off this thread.
          const read = (offset: number, length: number) => readBodyInto(file.slice(offset, offset + length).stream(), length, blockBuffers);
          stored = await keepFromSource(slices, read, this.options.blocks, this.options.sha256);
        }
      } catch {
        // Nothing kept: the server has it all.
      }
      keepAfter.end(hashes, stored);
    });
  }

  private async runBatch(batch: Queued[]): Promise<void> {
    for (const { view } of batch) this.start(view);
    const hashes: BlockHash[] = [];
    const knownParents = new Map(batch.map((queued) => [queued.path, queued.parent]));
    const parentsSent = new Map<FilePath, number>();
    try {
      const sjids = await uploadSmallFiles(
        batch.map(({ file, path }) => ({
          path,
          mtime: mtimeOf(file),
          size: file.size,
          read: async () => new Uint8Array(await file.arrayBuffer()),
        })),
        {
          ns: this.options.ns,
          api: this.options.api,
          blocks: this.options.blocks,
          sha256: async (bytes) => {
            const hash = await this.options.sha256(bytes);
            hashes.push(hash);
            return hash;
          },
          onHashed: (index, bytes) => {
            const view = batch[index].view;
            view.size = bytes;
            view.bytesHashed = bytes;
            view.state = 'uploading';
            this.options.onChange();
          },
          onUploaded: (index, bytes) => {
            const view = batch[index].view;
            view.bytesUploaded = bytes;
            view.state = 'committing';
            this.totals.bytesUploaded += bytes;
            this.options.onChange();
          },
          onUnreadable: (index, error) => this.fail(batch[index].view, new Error(`could not read the file: ${messageOf(error)}`)),
          conditions: {
            device: this.options.device,
            parentOf: async (path) => {
              const parent = this.parents.resolve(path, await (knownParents.get(path) ?? 0));
              parentsSent.set(path, parent);
              return parent;
            },
          },
          onConflictedCopy: (index, path) => {
            batch[index].view.conflictedCopy = path;
          },
        },
      );
      sjids.forEach((sjid, index) => {
        if (sjid === null) return;
        const { path, view } = batch[index];
        if (view.conflictedCopy === undefined) this.parents.committed(path, parentsSent.get(path) ?? 0, sjid);
        this.succeed(view);
      });
      this.options.onCommitted(hashes);
    } catch (error) {
      for (const { view } of batch) if (this.running.has(view)) this.fail(view, error);
    }
  }

  private start(view: UploadView): void {
    view.state = 'hashing';
    this.running.add(view);
    this.options.onChange();
  }

  private succeed(view: UploadView): void {
    this.running.delete(view);
    view.state = 'done';
    this.totals.doneFiles += 1;
    this.finished.push(view);
    if (this.finished.length > KEEP_FINISHED) this.finished = this.finished.slice(-KEEP_FINISHED);
    this.options.onChange(true);
  }

  private fail(view: UploadView, error: unknown): void {
    this.running.delete(view);
    view.state = 'failed';
    view.error = messageOf(error);
    this.totals.failedFiles += 1;
    this.failed.push(view);
    if (this.failed.length > KEEP_FAILED) this.failed = this.failed.slice(-KEEP_FAILED);
    this.options.onChange(true);
  }
}

function emptyTotals(): UploadTotals {
  return { files: 0, bytes: 0, doneFiles: 0, failedFiles: 0, bytesUploaded: 0 };
}

function mtimeOf(file: File): number {
  return Math.max(0, Math.floor(file.lastModified));
}

function messageOf(error: unknown): string {
  return describeError(error);
}
