import { describeError, type BlockHash, type FilePath, type NamespaceId } from '../protocol/index.ts';
import { BlockStoreError } from './block-store-error.ts';
import { foldEntries } from './file-table.ts';
import { spreadFetchOrder } from './fetch-order.ts';
import { bytesPresent, planMissingBlocks } from './planner.ts';
import { RateMeter } from './rate-meter.ts';
import { BlockScheduler } from './scheduler.ts';
import type { BlockSource, FileRecord, JournalClient, LocalBlockStore, Sha256, SyncStateStore } from './types.ts';

export interface NamespaceSyncOptions {
  ns: NamespaceId;
  journal: JournalClient;
  state: SyncStateStore;
  blocks: LocalBlockStore;
  sha256: Sha256;
  sources: () => readonly BlockSource[];
  maxInFlight?: number;
  longPollSeconds?: number;
  pageLimit?: number;
  /** Something a view shows has changed. Called often: throttle downstream. */
  onChange?: () => void;
  /** Every block of every live file up to `cursor` is stored (what an advert may claim). */
  onSynced?: (cursor: number) => void;
  /** A block is being fetched from the server: peers syncing alongside may wait for it. */
  onServerFetch?: (hash: BlockHash) => void;
  /** A block was stored (from any source): peers syncing alongside may want to hear of it. */
  onBlockStored?: (hash: BlockHash, bytes: number, sourceId: string) => void;
  /** A source is no longer asked this session (it sent bytes that fail their hash, or broke the protocol). */
  onPenalised?: (sourceId: string) => void;
  /**
   * Seed of this device's server fetch order (0 keeps journal order). Devices with
   * different seeds fetch different blocks first and trade the rest.
   */
  fetchOrderSeed?: number;
  now?: () => number;
}

export type FileStatus = 'synced' | 'syncing' | 'waiting';

export interface FileProgress {
  file: FileRecord;
  bytesDone: number;
  status: FileStatus;
  bytesPerSecond: number;
}

export interface EngineSnapshot {
  cursor: number;
  syncedCursor: number;
  files: FileProgress[];
  totalBytes: number;
  doneBytes: number;
  bytesPerSecond: number;
  bytesFromServer: number;
  bytesFromPeers: number;
  error: string | null;
}

/**
 * Keeps one namespace in sync: long-polls the journal, folds it into the file table,
 * and fetches the blocks live files lack through the scheduler. Its state survives a
 * restart through the SyncStateStore, so a reload resumes where it stopped.
 */
export class NamespaceSync {
  private files = new Map<FilePath, FileRecord>();
  private have = new Set<BlockHash>();
  private pathsByBlock = new Map<BlockHash, FilePath[]>();
  /** Blocks of live files, whether stored yet or not. */
  private liveBlocks = new Set<BlockHash>();
  /** Blocks of live files not stored yet: when the last one arrives, this device is in sync. */
  private missing = new Set<BlockHash>();
  /** The cursor whose live files `missing` was planned from (a page may be folding in meanwhile). */
  private plannedCursor = 0;
  private fileRates = new Map<FilePath, RateMeter>();
  private totalRate = new RateMeter();
  private cursor = 0;
  private syncedCursor = 0;
  private bytesFromServer = 0;
  private bytesFromPeers = 0;
  private error: string | null = null;
  private stopped = false;
  private readonly pollAbort = new AbortController();
  private readonly scheduler: BlockScheduler;
  private readonly now: () => number;
  private journalLoop: Promise<void> | null = null;

  constructor(private readonly options: NamespaceSyncOptions) {
    this.now = options.now ?? (() => Date.now());
    this.scheduler = new BlockScheduler({
      store: options.blocks,
      sha256: options.sha256,
      sources: options.sources,
      // Room for the server (4) and a full pipeline to a peer or two at once.
      maxInFlight: options.maxInFlight ?? 12,
      events: {
        stored: (want, bytes, source) => this.onBlockStored(want.hash, bytes, source),
        penalised: (source) => this.options.onPenalised?.(source.id),
        started: (want, source) => {
          if (source.kind === 'server') this.options.onServerFetch?.(want.hash);
        },
        failed: (_want, source, error) => {
          if (error instanceof BlockStoreError) this.error = `Could not store on this device: ${error.message}`;
          else if (source.kind === 'server') this.error = `Could not fetch from the server: ${messageOf(error)}`;
          this.options.onChange?.();
        },
      },
    });
  }

  async start(): Promise<void> {
    const state = await this.options.state.load(this.options.ns);
    this.cursor = state.cursor;
    this.syncedCursor = state.syncedCursor;
    this.files = new Map(state.files.map((file) => [file.path, file]));
    await this.learnStoredBlocks(state.files);
    this.replan();
    this.journalLoop = this.followJournal();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.pollAbort.abort();
    await Promise.all([this.scheduler.stop(), this.journalLoop]);
  }

  /** New sources (peers) are usable: start fetches that were waiting for one. */
  sourcesChanged(): void {
    this.scheduler.wake();
  }

  /** A peer misbehaved (malformed frames): stop asking it for blocks this session. */
  penalise(sourceId: string): void {
    this.scheduler.penalise(sourceId);
    this.options.onPenalised?.(sourceId);
  }

  /** Whether this device may hand `hash` to a peer: stored, and part of a live file. */
  holdsLiveBlock(hash: BlockHash): boolean {
    return this.liveBlocks.has(hash) && this.have.has(hash);
  }

  /** Whether a live file uses `hash` (stored here or not). */
  isLiveBlock(hash: BlockHash): boolean {
    return this.liveBlocks.has(hash);
  }

  /**
   * These blocks were removed from this device's store (no live file used them): forget
   * them, and fetch again any that a file has needed since.
   */
  forgetBlocks(hashes: readonly BlockHash[]): void {
    if (hashes.length === 0) return;
    for (const hash of hashes) this.have.delete(hash);
    this.replan();
  }

  /** True while some live file lacks blocks here (what peers are worth connecting for). */
  isMissingBlocks(): boolean {
    return this.syncedCursor < this.cursor || !this.scheduler.idle;
  }

  /** Blocks being fetched from the server right now (what a peer that just connected should hear as FETCHING). */
  serverFetchesInFlight(): BlockHash[] {
    return this.scheduler.inFlightFrom('server');
  }

  /** Stops fetching `hash` from the server (a peer is fetching it too); it waits for another source. */
  yieldServerFetch(hash: BlockHash): boolean {
    return this.scheduler.yieldFetch(hash, 'server');
  }

  /** Stored blocks of live files: what a peer syncing alongside may fetch from us. */
  heldLiveBlocks(): BlockHash[] {
    return [...this.liveBlocks].filter((hash) => this.have.has(hash));
  }

  file(path: string): FileRecord | undefined {
    return this.files.get(path as FilePath);
  }

  /** Blocks stored on this device by someone else (an upload in this or another tab). */
  async noteStoredBlocks(hashes: readonly BlockHash[]): Promise<void> {
    for (const hash of hashes) this.have.add(hash);
    this.replan();
  }

  snapshot(): EngineSnapshot {
    const now = this.now();
    const inFlight = this.scheduler.inFlight();
    const files: FileProgress[] = [];
    let totalBytes = 0;
    let doneBytes = 0;
    for (const file of this.files.values()) {
      const bytesDone = bytesPresent(file, this.have);
      const complete = file.blocks.every((hash) => this.have.has(hash));
      const status: FileStatus = complete ? 'synced' : file.blocks.some((hash) => inFlight.has(hash)) ? 'syncing' : 'waiting';
      const rate = complete ? 0 : (this.fileRates.get(file.path)?.bytesPerSecond(now) ?? 0);
      files.push({ file, bytesDone: complete ? file.size : bytesDone, status, bytesPerSecond: rate });
      totalBytes += file.size;
      doneBytes += complete ? file.size : bytesDone;
    }
    return {
      cursor: this.cursor,
      syncedCursor: this.syncedCursor,
      files,
      totalBytes,
      doneBytes,
      bytesPerSecond: this.totalRate.bytesPerSecond(now),
      bytesFromServer: this.bytesFromServer,
      bytesFromPeers: this.bytesFromPeers,
      error: this.error,
    };
  }

  private async followJournal(): Promise<void> {
    let caughtUp = false;
    let failures = 0;
    while (!this.stopped) {
      try {
        const page = await this.options.journal.readPage(this.cursor, {
          limit: this.options.pageLimit,
          waitSeconds: caughtUp ? (this.options.longPollSeconds ?? 25) : 0,
          signal: this.pollAbort.signal,
        });
        if (page.entries.length > 0) await this.applyPage(page.entries);
        caughtUp = !page.more;
        failures = 0;
        if (this.error?.startsWith('Journal')) this.error = null;
        this.options.onChange?.();
      } catch (error) {
        if (this.stopped) return;
        failures += 1;
        caughtUp = false;
        this.error = `Journal unavailable: ${messageOf(error)}`;
        this.options.onChange?.();
        await delay(Math.min(30_000, 500 * 2 ** Math.min(failures, 6)), this.pollAbort.signal);
      }
    }
  }

  private async applyPage(entries: Parameters<typeof foldEntries>[1]): Promise<void> {
    const { changed, removed } = foldEntries(this.files, entries);
    const cursor = entries[entries.length - 1].sjid;
    try {
      await this.options.state.applyPage(this.options.ns, changed, removed, cursor);
    } catch (error) {
      // The in-memory table ran ahead of what was persisted: reload the truth and retry later.
      const state = await this.options.state.load(this.options.ns);
      this.files = new Map(state.files.map((file) => [file.path, file]));
      this.cursor = state.cursor;
      throw error;
    }
    this.cursor = cursor;
    for (const path of removed) this.fileRates.delete(path);
    await this.learnStoredBlocks(changed);
    this.replan();
  }

  private async learnStoredBlocks(files: readonly FileRecord[]): Promise<void> {
    const unknown = new Set<BlockHash>();
    for (const file of files) for (const hash of file.blocks) if (!this.have.has(hash)) unknown.add(hash);
    if (unknown.size === 0) return;
    for (const hash of await this.options.blocks.hasBlocks([...unknown])) this.have.add(hash);
  }

  private replan(): void {
    const wanted = spreadFetchOrder(
      planMissingBlocks(this.options.ns, this.files.values(), this.have),
      this.options.fetchOrderSeed ?? 0,
    );
    this.pathsByBlock.clear();
    this.liveBlocks = new Set([...this.files.values()].flatMap((file) => file.blocks));
    const wantedSet = new Set(wanted.map((want) => want.hash));
    for (const file of this.files.values()) {
      for (const hash of file.blocks) {
        if (!wantedSet.has(hash)) continue;
        const paths = this.pathsByBlock.get(hash);
        if (paths) paths.push(file.path);
        else this.pathsByBlock.set(hash, [file.path]);
      }
    }
    this.missing = wantedSet;
    this.plannedCursor = this.cursor;
    this.scheduler.setWanted(wanted);
    // In sync is decided by the blocks stored, not by the scheduler going idle: a fetch it
    // still waits for (say, from a peer that vanished) must not hold back the advert.
    if (wanted.length === 0) void this.markSynced(this.plannedCursor);
  }

  private onBlockStored(hash: BlockHash, bytes: number, source: BlockSource): void {
    this.have.add(hash);
    if (this.missing.delete(hash) && this.missing.size === 0) void this.markSynced(this.plannedCursor);
    const now = this.now();
    this.totalRate.add(bytes, now);
    if (source.kind === 'server') this.bytesFromServer += bytes;
    else this.bytesFromPeers += bytes;
    for (const path of this.pathsByBlock.get(hash) ?? []) {
      let meter = this.fileRates.get(path);
      if (!meter) this.fileRates.set(path, (meter = new RateMeter()));
      meter.add(bytes, now);
    }
    if (this.error?.startsWith('Could not')) this.error = null;
    this.options.onBlockStored?.(hash, bytes, source.id);
    this.options.onChange?.();
  }

  private async markSynced(cursor: number): Promise<void> {
    if (cursor <= this.syncedCursor || this.stopped) return;
    this.syncedCursor = cursor;
    this.fileRates.clear();
    await this.options.state.setSyncedCursor(this.options.ns, cursor);
    this.options.onSynced?.(cursor);
    this.options.onChange?.();
  }
}

function messageOf(error: unknown): string {
  return describeError(error);
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
