import { expectedBlockSize } from '../../src/engine/block-layout.ts';
import type { NamespaceSync } from '../../src/engine/namespace-sync.ts';
import type { FileRecord, Sha256, UploadApi } from '../../src/engine/types.ts';
import type { FileChangeFeed } from '../../src/engine/file-change-feed.ts';
import { describeError, isFolderWorkName, type FilePath, type FolderPlatform, type NamespaceId } from '../../src/protocol/index.ts';
import type { FolderSyncView } from '../sync-api.ts';
import type { BlobBlockStore } from '../upload-queue.ts';
import { FolderDirs } from './folder-dirs.ts';
import { FolderRecords } from './folder-records.ts';
import { FolderScanner, type JournalSide, type ScanResult } from './folder-scanner.ts';
import type { FolderRecord, FolderSyncStore } from './folder-sync-store.ts';
import { FolderWriter } from './folder-writer.ts';
import { JournalNames, foldedPath, type NamedEntry } from './journal-names.ts';

export interface FolderSyncDeps {
  ns: NamespaceId;
  root: FileSystemDirectoryHandle;
  store: FolderSyncStore;
  api: UploadApi;
  blocks: BlobBlockStore;
  sha256: Sha256;
  device: string;
  platform: FolderPlatform;
  /** The running engine while this tab syncs the workspace (the leader); null in other tabs. */
  engine: () => NamespaceSync | null;
}

/** Without FileSystemObserver the folder is scanned this often (and on page focus). */
const SCAN_EVERY_MS = 10_000;
/** With it, a full scan still runs now and then, in case a change went unreported. */
const SCAN_EVERY_OBSERVED_MS = 60_000;
/** A scan waits at least this many times its own last duration (a 100,000-file folder takes seconds). */
const SCAN_SPACING = 4;
/** How often the journal side looks for new entries and completed files. */
const JOURNAL_CHECK_MS = 500;
/** Changes reported by the observer are gathered this long before they are looked at. */
const OBSERVED_SETTLE_MS = 300;
/** More reported paths than this at once (a folder copied in, a big checkout): a full scan instead. */
const MAX_OBSERVED_PATHS = 1_000;
/** A reported file that could not be read (still being written) is looked at again after this long. */
const UNREADABLE_RETRY_MS = 2_000;
/** The journal side waits at least this many times its last look over the live files. */
const PLAN_SPACING = 10;
const MAX_BACKOFF_MS = 30_000;
/** Files written into the folder at once. */
const WRITES_AT_ONCE = 4;
/** After a change reported without paths, a full scan waits at least this many times the last scan's duration (at most a third of the time scanning). */
const OBSERVED_SPACING = 2;
/** Refused names shown (all are counted). */
const SHOW_REFUSED = 100;

/**
 * Two-way sync of one workspace with one folder on this computer (any
 * FileSystemDirectoryHandle: a folder the user picked, or an origin-private one in tests).
 * One loop does one thing at a time: write what the journal has that the folder lacks
 * (FolderWriter), then, when due, scan the folder and commit its changes (FolderScanner).
 * It runs only where the engine runs (the tab that holds the workspace's sync lock).
 */
export class FolderSync {
  private readonly dirs: FolderDirs;
  private readonly writer: FolderWriter;
  private readonly scanner: FolderScanner;
  private stopped = false;
  /** This tab waited while another one synced the folder (its records in memory may be stale). */
  private followed = false;
  private loop: Promise<void> = Promise.resolve();
  private wakeUp: (() => void) | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private observer: FileSystemObserverInstance | null = null;
  private scanWanted = true;
  /** The observer reported a change it could not say where: a full scan follows, but not back to back on a large folder. */
  private changeObserved = false;
  /** Paths the observer reported as changed since they were last looked at. */
  private observedPaths = new Set<string>();
  private lastScanAt = 0;
  private lastScanMs = 0;
  private journalMark = '';
  /** How long the last look over the live files took (a 100,000-file table is looked at less often). */
  private planMs = 0;
  /** After a failed pass (folder gone, access revoked, disk full) the loop waits longer each time, up to 30 s. */
  private backoffMs = 0;
  /** When the loop may try again after a failed pass. */
  private retryAt = 0;
  /** Paths this loop wrote since the last scan: their observer events are our own. */
  private readonly ownWrites = new Set<string>();
  /** Live journal paths the folder cannot hold, and which path holds each folded name (for the scan's twin check). */
  private readonly names: JournalNames;
  /** The engine's change feed this loop follows (a new engine, a new feed and a full pass). */
  private feed: { engine: NamespaceSync; feed: FileChangeFeed } | null = null;
  /** The next journal pass looks at every live file. */
  private fullPlanWanted = true;
  /** Live files not written yet because blocks are missing (the panel's "waiting"). */
  private readonly waitingPaths = new Set<string>();
  /** Files whose write failed, with the reason: looked at again on every pass. */
  private readonly failedPaths = new Map<string, string>();
  private folderRefused = new Map<string, string>();
  private readonly view: Omit<FolderSyncView, 'refused' | 'refusedCount' | 'watching' | 'folderName' | 'trackedFiles'> = {
    state: 'starting',
    written: 0,
    uploaded: 0,
    deleted: 0,
    conflicts: 0,
    waiting: 0,
    failed: [],
    error: null,
    lastScanAt: null,
    pathsChecked: 0,
    journalLooked: 0,
  };

  private constructor(
    private readonly deps: FolderSyncDeps,
    private readonly records: FolderRecords,
  ) {
    this.dirs = new FolderDirs(deps.root);
    this.names = new JournalNames(deps.platform);
    this.writer = new FolderWriter({ dirs: this.dirs, records, blocks: deps.blocks, sha256: deps.sha256, device: deps.device });
    this.scanner = new FolderScanner({ ns: deps.ns, dirs: this.dirs, records, api: deps.api, blocks: deps.blocks, sha256: deps.sha256, device: deps.device, platform: deps.platform });
  }

  static async start(deps: FolderSyncDeps): Promise<FolderSync> {
    const sync = new FolderSync(deps, await FolderRecords.load(deps.ns, deps.store));
    await sync.observe();
    sync.loop = sync.run();
    return sync;
  }

  status(): FolderSyncView {
    const refused = [...this.names.refused, ...this.folderRefused];
    return {
      ...this.view,
      failed: this.view.failed.slice(0, SHOW_REFUSED),
      folderName: this.deps.root.name,
      trackedFiles: this.records.size,
      watching: this.observer ? 'observer' : 'scan',
      refused: refused.slice(0, SHOW_REFUSED).map(([path, reason]) => ({ path, reason })),
      refusedCount: refused.length,
    };
  }

  /** Look at the folder again soon (the page gained focus, or a test asks). */
  scanSoon(): void {
    this.scanWanted = true;
    this.wake();
  }

  /** Stops after the file in hand (records saved), so nothing is written or recorded once this resolves. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.observer?.disconnect();
    this.wake();
    await this.loop;
    this.feed?.feed.close();
    await this.records.flush().catch(() => undefined);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const engine = this.deps.engine();
      if (!engine) {
        this.view.state = 'other-tab';
        this.followed = true;
      } else {
        try {
          if (this.followed) {
            // Another tab synced the folder until now: its records are the truth.
            await this.records.reload();
            this.followed = false;
            this.journalMark = '';
            this.fullPlanWanted = true;
            this.scanWanted = true;
          }
          this.view.state = 'syncing';
          const mark = journalMark(engine);
          if (mark !== this.journalMark) {
            this.journalMark = mark;
            await this.writeJournal(engine);
          }
          if (this.scanDue()) await this.scan(engine);
          else if (this.observedPaths.size > 0) await this.scanObserved(engine);
          this.view.error = null;
          this.view.state = 'idle';
          this.backoffMs = 0;
        } catch (error) {
          this.backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(1_000, this.backoffMs * 2));
          this.view.error = `Folder sync with ${this.deps.root.name} stopped for now: ${describeError(error)}`;
          this.view.state = 'error';
          this.dirs.forget();
          this.journalMark = '';
          this.fullPlanWanted = true;
          // The retry is a full scan: the error stays until one gets through the folder.
          this.scanWanted = true;
          this.retryAt = performance.now() + this.backoffMs;
        }
      }
      await this.sleep(Math.max(JOURNAL_CHECK_MS, this.planMs * PLAN_SPACING));
      // A reported change or a focus does not cut a failed pass's wait short.
      while (!this.stopped && performance.now() < this.retryAt) await this.sleep(this.retryAt - performance.now());
    }
  }

  private scanDue(): boolean {
    if (this.scanWanted) return true;
    const sinceLast = performance.now() - this.lastScanAt;
    if (this.changeObserved && sinceLast >= this.lastScanMs * OBSERVED_SPACING) return true;
    const every = Math.max(this.observer ? SCAN_EVERY_OBSERVED_MS : SCAN_EVERY_MS, this.lastScanMs * SCAN_SPACING);
    return sinceLast >= every;
  }

  /**
   * Journal → folder: deletions first, then every live file this device holds whole and the
   * folder lacks. An online-only file is fetched for the folder (priority fetch) as it is
   * written: the folder holds it, the browser keeps its blocks only in the evictable cache.
   * Work per change: only the paths the engine's change feed names (and files whose write
   * failed) are looked at; the whole table only at start, after another tab synced the
   * folder, after a failed pass, on a keep-policy change, or when twins are involved.
   */
  private async writeJournal(engine: NamespaceSync): Promise<void> {
    const planned = performance.now();
    const { full, paths } = this.journalChanges(engine);
    const gone: FolderRecord[] = [];
    let candidates: FileRecord[];
    if (full) {
      candidates = [...engine.liveFiles()];
      this.names.rebuild(candidates.map(namedEntry));
      this.waitingPaths.clear();
      // Only the records to remove are listed (removing changes the table being iterated).
      for (const record of this.records.all()) if (this.leftJournal(engine, record)) gone.push(record);
    } else {
      candidates = [];
      for (const path of new Set<string>([...paths, ...this.failedPaths.keys()])) {
        const file = engine.file(path);
        if (file) candidates.push(file);
        else {
          this.waitingPaths.delete(path);
          this.failedPaths.delete(path);
          const record = this.records.get(path as FilePath);
          if (record && this.leftJournal(engine, record)) gone.push(record);
        }
      }
    }
    for (const record of gone) {
      if (await this.writer.remove(record)) this.view.deleted += 1;
    }
    const ready: FileRecord[] = [];
    this.view.journalLooked += candidates.length;
    for (const file of candidates) {
      this.waitingPaths.delete(file.path);
      if (this.names.refused.has(file.path)) {
        this.failedPaths.delete(file.path);
        continue;
      }
      const record = this.records.get(file.path);
      if (record && record.sjid >= file.sjid) {
        this.failedPaths.delete(file.path);
        continue;
      }
      const progress = engine.fileProgress(file.path);
      if (progress?.status === 'synced' || progress?.onlineOnly) ready.push(file);
      else this.waitingPaths.add(file.path);
    }
    this.planMs = performance.now() - planned;
    let denied: unknown = null;
    // A few files at once: each costs several round trips to the browser process, which overlap.
    await eachOf(ready, WRITES_AT_ONCE, async (file) => {
      if (this.stopped || denied) {
        // Not tried: the next pass looks at it again.
        this.failedPaths.set(file.path, 'not written yet');
        return;
      }
      try {
        this.ownWrites.add(file.path);
        if (engine.fileProgress(file.path)?.onlineOnly) {
          await engine.fetchBlocksNow(file.blocks.map((hash, index) => ({ ns: this.deps.ns, hash, sjid: file.sjid, sizeHint: expectedBlockSize(file.size, file.blocks.length, index) })));
        }
        const outcome = await this.writer.write(file);
        this.failedPaths.delete(file.path);
        if (outcome === 'written' || outcome === 'kept-aside') this.view.written += 1;
        if (outcome === 'kept-aside') {
          this.view.conflicts += 1;
          this.scanWanted = true; // The copy kept aside goes up as a new file.
        }
      } catch (error) {
        this.failedPaths.set(file.path, describeError(error));
        // A missing folder or revoked access fails every file: stop here and say so.
        if (error instanceof DOMException && (error.name === 'NotAllowedError' || error.name === 'SecurityError')) denied = error;
      }
    });
    await this.records.flush();
    this.view.waiting = this.waitingPaths.size;
    this.view.failed = [...this.failedPaths].slice(0, SHOW_REFUSED).map(([path, error]) => ({ path, error }));
    if (denied) throw denied;
    // Files still arriving: check again when the engine moves (the feed names them as their blocks come).
  }

  /**
   * What changed in the journal since the last pass: `full` when the whole table must be
   * looked at (a new engine, a first pass, a reload, a failed pass, a change to every file,
   * or a change near case or Unicode twins).
   */
  private journalChanges(engine: NamespaceSync): { full: boolean; paths: FilePath[] } {
    if (this.feed?.engine !== engine) {
      this.feed?.feed.close();
      this.feed = { engine, feed: engine.watchFileChanges() };
      this.fullPlanWanted = true;
    }
    const { all, paths } = this.feed.feed.drain();
    const full = this.fullPlanWanted || all || !this.names.update(paths.map((path) => ({ path, entry: entryOf(engine.file(path)) })));
    this.fullPlanWanted = false;
    return { full, paths };
  }

  /** A record whose path the journal no longer has (and whose commit the engine has seen): the folder's file goes. */
  private leftJournal(engine: NamespaceSync, record: FolderRecord): boolean {
    return !record.deleted && record.sjid !== 0 && !engine.file(record.path) && engine.cursor >= record.sjid;
  }

  private async scan(engine: NamespaceSync): Promise<void> {
    this.scanWanted = false;
    this.changeObserved = false;
    // Changes reported from here on may be in folders the walk has passed: they stay.
    this.observedPaths.clear();
    const started = performance.now();
    this.ownWrites.clear();
    const result = await this.scanner.scan(this.journalSide(engine));
    this.lastScanMs = performance.now() - started;
    this.lastScanAt = performance.now();
    this.view.lastScanAt = Date.now();
    this.folderRefused = new Map([...result.refused].map(([path, reason]) => [path, `not synced from the folder: ${reason}`]));
    this.scanned(result);
    // Files that could not be read (still being written) are looked at again soon, but a
    // large folder with a file that stays unreadable is not walked over and over.
    if (result.failed.length > 0) this.scheduleScan(Math.max(2_000, this.lastScanMs * SCAN_SPACING));
  }

  /** Only the paths the observer reported: a file is looked at, a folder walked, a gone path's files deleted. */
  private async scanObserved(engine: NamespaceSync): Promise<void> {
    const paths = [...this.observedPaths];
    this.observedPaths.clear();
    this.ownWrites.clear();
    let result: ScanResult;
    try {
      result = await this.scanner.scanPaths(this.journalSide(engine), paths);
    } catch {
      // A reported folder went away while it was walked, say: the full scan sorts it out.
      this.scanWanted = true;
      return;
    }
    this.view.pathsChecked += paths.length;
    if (result.fullScanWanted) this.scanWanted = true;
    for (const path of paths) {
      for (const refused of this.folderRefused.keys()) if (refused === path || refused.startsWith(`${path}/`)) this.folderRefused.delete(refused);
    }
    for (const [path, reason] of result.refused) this.folderRefused.set(path, `not synced from the folder: ${reason}`);
    this.scanned(result);
    // Files that could not be read (still being written) are looked at again in a moment.
    if (result.failed.length > 0) {
      setTimeout(() => {
        for (const { path } of result.failed) this.observedPaths.add(path);
        this.wake();
      }, UNREADABLE_RETRY_MS);
    }
  }

  private journalSide(engine: NamespaceSync): JournalSide {
    return {
      file: (path) => engine.file(path),
      get cursor() {
        return engine.cursor;
      },
      noteStoredBlocks: (hashes) => void engine.noteStoredBlocks(hashes),
      twinOf: (path) => {
        const owner = this.names.owners.get(foldedPath(path));
        return owner === undefined || owner === path ? undefined : owner;
      },
    };
  }

  private scanned(result: ScanResult): void {
    this.view.uploaded += result.uploaded;
    this.view.deleted += result.deleted;
    this.view.conflicts += result.conflicted;
    if (result.failed.length > 0) this.view.failed = [...this.view.failed, ...result.failed].slice(-SHOW_REFUSED);
    // What was uploaded is now in the journal: its records make the writer skip it.
    this.journalMark = '';
  }

  private scheduleScan(afterMs: number): void {
    setTimeout(() => this.scanSoon(), afterMs);
  }

  /**
   * FileSystemObserver where the browser has it: the paths it reports are looked at within a
   * moment (not the whole folder); a report without a usable path, or too many at once, brings
   * a full scan instead.
   */
  private async observe(): Promise<void> {
    const Observer = (globalThis as { FileSystemObserver?: FileSystemObserverConstructor }).FileSystemObserver;
    if (!Observer) return;
    let settle: ReturnType<typeof setTimeout> | null = null;
    const observer = new Observer((changes) => {
      let noted = false;
      for (const change of changes) {
        if (change.type === 'errored' || change.type === 'unknown' || change.relativePathComponents.length === 0) {
          this.changeObserved = true;
          noted = true;
          continue;
        }
        const path = change.relativePathComponents.join('/');
        // Our own writes, and the swap files a writable makes beside its file.
        if (change.relativePathComponents.some(isFolderWorkName)) continue;
        if ((change.type === 'appeared' || change.type === 'modified') && this.ownWrites.has(path)) continue;
        this.observedPaths.add(path);
        if (change.type === 'moved' && change.relativePathMovedFrom && change.relativePathMovedFrom.length > 0) this.observedPaths.add(change.relativePathMovedFrom.join('/'));
        noted = true;
      }
      if (this.observedPaths.size > MAX_OBSERVED_PATHS) {
        this.observedPaths.clear();
        this.changeObserved = true;
      }
      if (!noted || settle) return;
      settle = setTimeout(() => {
        settle = null;
        this.wake();
      }, OBSERVED_SETTLE_MS);
    });
    try {
      await observer.observe(this.deps.root, { recursive: true });
      this.observer = observer;
    } catch {
      // Not for this kind of folder: the timer and page focus bring scans instead.
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeUp = resolve;
      this.timer = setTimeout(() => this.wake(), ms);
    });
  }

  private wake(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const wakeUp = this.wakeUp;
    this.wakeUp = null;
    wakeUp?.();
  }
}

/** Runs `work` over `items` with at most `limit` at once. */
async function eachOf<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

/** Changes when the journal side has new work: new entries, or blocks that completed files. */
function journalMark(engine: NamespaceSync): string {
  const summary = engine.summary();
  return `${summary.cursor}:${summary.doneBytes}:${summary.fileCount}`;
}

function namedEntry(file: FileRecord): NamedEntry {
  return { path: file.path, order: file.sjid };
}

function entryOf(file: FileRecord | undefined): NamedEntry | undefined {
  return file && namedEntry(file);
}

export type { FilePath };
