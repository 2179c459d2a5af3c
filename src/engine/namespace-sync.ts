import { MAX_BLOCK_SIZE, describeError, type BlockHash, type FilePath, type NamespaceId } from '../protocol/index.ts';
import { BlockStoreError } from './block-store-error.ts';
import { FileChangeFeed } from './file-change-feed.ts';
import { foldEntries } from './file-table.ts';
import { spreadFetchOrder } from './fetch-order.ts';
import { LruBlockCache } from './block-cache.ts';
import { KeepPolicy } from './keep-policy.ts';
import { LiveBlocks, type WantDelta } from './live-blocks.ts';
import { RateMeter } from './rate-meter.ts';
import { isStorageFull, type StorageFullState } from './storage-full.ts';
import { BlockScheduler } from './scheduler.ts';
import { isTransient } from './server-api.ts';
import type { BlockSource, FileRecord, JournalClient, LocalBlockStore, Sha256, SyncStateStore, WantedBlock } from './types.ts';

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
  /** Record which files change, for drainChangedFiles() (a view that follows files one by one). */
  trackFileChanges?: boolean;
  /** Something a view shows has changed. Called often: throttle downstream. */
  onChange?: () => void;
  /**
   * Every block of every kept file up to `cursor` is stored, or the synced cursor went down
   * (the keep policy grew). What an advert may claim is `advertisedCursor`.
   */
  onSynced?: (cursor: number) => void;
  /** Which files to keep on this device (default: all). */
  keepPolicy?: KeepPolicy;
  /** Bytes of blocks fetched for online-only files kept before the least recently used go (default 1 GiB). */
  cacheLimitBytes?: number;
  /**
   * Removes cache blocks from the store. Without it nothing is evicted. A failure leaves them
   * stored (the next start counts them again).
   */
  evictBlocks?: (hashes: readonly BlockHash[]) => Promise<void>;
  /**
   * Read the journal but fetch nothing until `releaseFetching()` (a join that may not fit
   * asks the user first). Readers (fetchBlocksNow) still get their blocks.
   */
  holdFetching?: boolean;
  /** The journal was read to its end for the first time (the whole workspace is known). */
  onCaughtUp?: () => void;
  /** A block is being fetched from the server: peers syncing alongside may wait for it. */
  onServerFetch?: (hash: BlockHash) => void;
  /** A block was stored (from any source): peers syncing alongside may want to hear of it. */
  onBlockStored?: (hash: BlockHash, bytes: number, sourceId: string) => void;
  /** A source is no longer asked this session (it sent bytes that fail their hash, or broke the protocol). */
  onPenalised?: (sourceId: string) => void;
  /**
   * Bytes this device's block store may still take (a browser's quota minus its usage), or
   * null when unknown: only for the message, since browsers' estimates can be far off.
   */
  freeSpace?: () => Promise<number | null>;
  /**
   * Whether the store can take `bytes` more right now (a real test write). While the store is
   * full the engine asks this every few seconds and resumes once it says yes. Without it, the
   * engine simply tries again.
   */
  canStore?: (bytes: number) => Promise<boolean>;
  /** How often to look for free space while paused (default 3 s). */
  storagePollMs?: number;
  /**
   * Seed of this device's server fetch order (0 keeps journal order). Devices with
   * different seeds fetch different blocks first and trade the rest.
   */
  fetchOrderSeed?: number;
  now?: () => number;
}

/** `online`: an online-only file not all stored here (`synced` when its blocks happen to be). */
export type FileStatus = 'synced' | 'syncing' | 'waiting' | 'online';

export interface FileProgress {
  file: FileRecord;
  bytesDone: number;
  status: FileStatus;
  bytesPerSecond: number;
  /** The keep policy makes this file online only. */
  onlineOnly: boolean;
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
  /** Set while fetching is paused because the block store is full. */
  storageFull: StorageFullState | null;
  /** Online-only files (not in the totals above) and their bytes. */
  onlineFileCount: number;
  onlineBytes: number;
  /** Bytes of blocks kept for online-only files (the evictable cache). */
  cacheBytes: number;
}

/**
 * Keeps one namespace in sync: long-polls the journal, folds it into the file table,
 * and fetches the blocks live files lack through the scheduler. Its state survives a
 * restart through the SyncStateStore, so a reload resumes where it stopped.
 */
export class NamespaceSync {
  private files = new Map<FilePath, FileRecord>();
  /** Live files' blocks, kept change by change (work per change, not per workspace). */
  private live: LiveBlocks;
  /** The cursor whose live files the wanted set was planned from (a page may be folding in meanwhile). */
  private plannedCursor = 0;
  /**
   * Files whose progress or status changed since the last drainChangedFiles(); null unless
   * the owner asked for it (`trackFileChanges`), so a caller that never drains keeps nothing.
   */
  private readonly changedFiles: FileChangeFeed | null;
  /** Every follower's feed (`changedFiles` and those of `watchFileChanges`). */
  private readonly feeds = new Set<FileChangeFeed>();
  private fileRates = new Map<FilePath, RateMeter>();
  private totalRate = new RateMeter();
  private cursorValue = 0;
  private syncedCursorValue = 0;
  private bytesFromServer = 0;
  private bytesFromPeers = 0;
  private error: string | null = null;
  private storageFull: StorageFullState | null = null;
  /** Space was found while paused: sources are asked again, the pause shows until a block is stored. */
  private storageRetrying = false;
  private storageTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private readonly pollAbort = new AbortController();
  private readonly scheduler: BlockScheduler;
  private readonly now: () => number;
  private journalLoop: Promise<void> | null = null;
  /** Readers waiting for blocks (fetchBlocksNow), by block. */
  private readonly readers = new Map<BlockHash, Set<BlockReader>>();
  private policy: KeepPolicy;
  /** Blocks only online-only files use, stored because someone read them. */
  private readonly cache: LruBlockCache;
  /** The blocks of the last few reads: never evicted, their readers may not have read them yet. */
  private recentReads: BlockHash[][] = [];
  private held: boolean;
  /**
   * Blocks this device is storing itself (an upload keeping its local copy after the commit):
   * not fetched while that runs, so an upload is not downloaded again. Each holds the want
   * planned meanwhile, handed to the scheduler if the keep did not store the block.
   */
  private readonly storedLocallySoon = new Map<BlockHash, WantedBlock | null>();
  private caughtUpOnce = false;

  constructor(private readonly options: NamespaceSyncOptions) {
    this.now = options.now ?? (() => Date.now());
    this.policy = options.keepPolicy ?? new KeepPolicy();
    this.held = options.holdFetching ?? false;
    this.cache = new LruBlockCache(options.cacheLimitBytes ?? DEFAULT_CACHE_LIMIT);
    this.live = new LiveBlocks(options.ns, (path) => this.policy.isKept(path));
    this.changedFiles = options.trackFileChanges ? this.watchFileChanges() : null;
    this.scheduler = new BlockScheduler({
      store: options.blocks,
      sha256: options.sha256,
      // While the store is full nobody is asked for blocks: they would only be thrown away.
      sources: () => (this.storageFull && !this.storageRetrying ? [] : options.sources()),
      // Room for the server (4) and a full pipeline to a peer or two at once.
      maxInFlight: options.maxInFlight ?? 12,
      events: {
        stored: (want, bytes, source) => this.onBlockStored(want.hash, bytes, source),
        penalised: (source) => this.options.onPenalised?.(source.id),
        started: (want, source) => {
          this.noteFilesOf(want.hash);
          if (source.kind === 'server') this.options.onServerFetch?.(want.hash);
        },
        failed: (want, source, error) => {
          this.noteFilesOf(want.hash);
          this.failReaders(want.hash, source, error);
          if (isStorageFull(error)) void this.pauseForStorage();
          else if (error instanceof BlockStoreError) this.error = `Could not store on this device: ${error.message}`;
          else if (source.kind === 'server') this.error = `Could not fetch from the server: ${messageOf(error)}`;
          this.options.onChange?.();
        },
      },
    });
  }

  async start(): Promise<void> {
    const state = await this.options.state.load(this.options.ns);
    if (this.held) this.scheduler.holdBackground(true);
    this.cursorValue = state.cursor;
    this.syncedCursorValue = state.syncedCursor;
    this.files = new Map(state.files.map((file) => [file.path, file]));
    await this.learnStoredBlocks(state.files);
    const inJournalOrder = [...state.files].sort((a, b) => a.sjid - b.sjid);
    this.plan(this.live.apply(inJournalOrder.map((file) => ({ path: file.path, next: file }))));
    this.refillCache();
    await this.keepHeldBlocks(state.files);
    this.journalLoop = this.followJournal();
  }

  /** Whether a kept file uses `hash` (another workspace must not evict it). */
  keepsBlock(hash: BlockHash): boolean {
    return this.live.isKeptBlock(hash);
  }

  /** A new limit for the cache of online-only blocks (the oldest go at once when over it). */
  setCacheLimit(bytes: number): void {
    this.cache.setLimit(bytes);
    this.evictCache();
  }

  /** Whether background fetching waits for releaseFetching(). */
  get fetchingHeld(): boolean {
    return this.held;
  }

  /** Starts the background fetching a `holdFetching` engine held back. */
  releaseFetching(): void {
    if (!this.held) return;
    this.held = false;
    this.scheduler.holdBackground(false);
  }

  /** The keep policy in force. */
  get keepPolicy(): KeepPolicy {
    return this.policy;
  }

  /**
   * Applies a new keep policy: files now kept want their missing blocks (fetched in the
   * background), blocks only online-only files use become cache blocks (the least recently
   * used go once the cache is over its limit); blocks a kept file shares stay.
   */
  setKeepPolicy(policy: KeepPolicy): void {
    this.policy = policy;
    this.noteAllChanged();
    this.plan(this.live.setKeep((path) => this.policy.isKept(path)));
    if (this.live.missingCount > 0 && this.syncedCursorValue > 0) {
      // Files that just became kept are not all here: the old claim no longer holds.
      this.syncedCursorValue = 0;
      void this.options.state.setSyncedCursor(this.options.ns, 0).catch(() => undefined);
      this.options.onSynced?.(0);
    }
    this.refillCache();
    void this.keepHeldBlocks(this.files.values()).catch(() => undefined);
    this.options.onSynced?.(this.syncedCursorValue);
    this.options.onChange?.();
  }

  /** Kept files' stored blocks are made safe from eviction (LocalBlockStore.keepBlocks). */
  private async keepHeldBlocks(files: Iterable<FileRecord>): Promise<void> {
    if (!this.options.blocks.keepBlocks) return;
    const held = new Set<BlockHash>();
    for (const file of files) {
      for (const hash of file.blocks) if (this.live.isKeptBlock(hash) && this.live.holds(hash)) held.add(hash);
    }
    if (held.size === 0) return;
    const gone = await this.options.blocks.keepBlocks([...held]);
    if (gone.length > 0 && !this.stopped) this.forgetBlocks(gone);
  }

  /**
   * The cursor a peer download advertisement may claim: the synced cursor when every live
   * file is kept, else 0. An online-only file's blocks are mostly not here, so a device
   * holding a partial copy claims nothing by cursor and announces what it holds with HAVE;
   * peers then never count on it for a block it lacks (docs/protocol.md, "advert").
   */
  get advertisedCursor(): number {
    return this.live.onlineFileCount > 0 ? 0 : this.syncedCursorValue;
  }

  /** The cache's accounting follows the stored blocks that only online-only files use. */
  private refillCache(): void {
    for (const hash of [...this.cache.keys()]) if (!this.live.isLive(hash) || this.live.isKeptBlock(hash)) this.cache.remove(hash);
    this.cache.addAllCold(this.live.heldOnlineOnly());
    this.evictCache();
  }

  /** Removes least recently used cache blocks until the cache fits its limit (`all`: every one that may go). */
  private evictCache(all = false): number {
    if (!this.options.evictBlocks) return 0;
    const spare = new Set(this.recentReads.flat());
    // A block a kept file took up since it was cached only leaves the accounting, never the store.
    const evicted = (all ? this.cache.evictAll(spare) : this.cache.evictOverflow(spare)).filter((hash) => !this.live.isKeptBlock(hash));
    if (evicted.length === 0) return 0;
    for (const path of this.live.dropped(evicted)) this.noteChanged(path);
    void this.options.evictBlocks(evicted).catch(() => undefined);
    this.options.onChange?.();
    return evicted.length;
  }
  async stop(): Promise<void> {
    this.stopped = true;
    for (const set of this.readers.values()) for (const reader of set) reader.reject(new Error('syncing of this workspace stopped'));
    this.readers.clear();
    if (this.storageTimer) clearTimeout(this.storageTimer);
    this.pollAbort.abort();
    await Promise.all([this.scheduler.stop(), this.journalLoop]);
  }

  /**
   * Makes these blocks present before anything else: the ones not stored yet are fetched
   * first (peers that hold them, else the server), past the background sync, each verified
   * against its hash and stored as usual. Resolves once all are stored. Rejects when the
   * server refuses one outright (gone from the journal, not allowed), when one cannot be
   * stored, when the engine stops, or with `signal`'s reason (the reader went away: the
   * blocks go back to the background order).
   */
  async fetchBlocksNow(wants: readonly WantedBlock[], signal?: AbortSignal, options: { ahead?: boolean } = {}): Promise<void> {
    if (wants.length === 0) return;
    this.recentReads.push(wants.map((want) => want.hash));
    if (this.recentReads.length > RECENT_READS_SPARED) this.recentReads.shift();
    const present = await this.options.blocks.hasBlocks(wants.map((want) => want.hash));
    // A cache block read again is the most recently used; one evicted meanwhile is fetched again.
    for (const want of wants) if (present.has(want.hash)) this.cache.use(want.hash);
    this.evictCache();
    const missing = wants.filter((want) => !present.has(want.hash));
    if (missing.length === 0) return;
    signal?.throwIfAborted();
    if (this.stopped) throw new Error('syncing of this workspace stopped');
    // Paused for storage, nobody is asked for blocks: say so now rather than let the reader time out.
    if (this.storageFull && !this.storageRetrying) {
      throw new Error(`could not fetch blocks: this browser's storage for the site is full (${this.storageFull.neededBytes} more bytes are needed)`);
    }
    const mine: Array<[BlockHash, BlockReader]> = [];
    const waits = missing.map(
      (want) =>
        new Promise<void>((resolve, reject) => {
          const reader = { resolve, reject };
          let set = this.readers.get(want.hash);
          if (!set) this.readers.set(want.hash, (set = new Set()));
          set.add(reader);
          mine.push([want.hash, reader]);
        }),
    );
    const giveUp = () => {
      const abandoned: BlockHash[] = [];
      for (const [hash, reader] of mine) {
        const set = this.readers.get(hash);
        if (!set?.delete(reader)) continue;
        reader.reject(signal?.reason ?? new Error('the read was cancelled'));
        if (set.size === 0) {
          this.readers.delete(hash);
          abandoned.push(hash);
        }
      }
      this.unprioritise(abandoned);
    };
    signal?.addEventListener('abort', giveUp, { once: true });
    this.scheduler.prioritise(missing, options);
    try {
      await Promise.all(waits);
    } finally {
      signal?.removeEventListener('abort', giveUp);
    }
  }

  /** A fetch a reader waits for failed: the reader is told when no source is left to ask. */
  private failReaders(hash: BlockHash, source: BlockSource, error: unknown): void {
    const set = this.readers.get(hash);
    if (!set) return;
    const final = isStorageFull(error) || error instanceof BlockStoreError || (source.kind === 'server' && !isTransient(error));
    if (!final) return;
    this.readers.delete(hash);
    this.unprioritise([hash]);
    const reason = new Error(`could not fetch block ${hash.slice(0, 12)}…: ${messageOf(error)}`, { cause: error });
    for (const reader of set) reader.reject(reason);
  }

  /**
   * How many blocks a sequential reader of a file may ask for ahead of the one it reads
   * (fetchBlocksNow with `ahead`): up to 8 (32 MiB), and at most a quarter of the cache, so
   * the blocks read ahead never push out the ones being read (an online-only file's blocks
   * are cache blocks).
   */
  readAheadBlocks(): number {
    return Math.max(1, Math.min(MAX_READ_AHEAD_BLOCKS, Math.floor(this.cache.limit / MAX_BLOCK_SIZE / 4)));
  }

  /** Readers gave up on these blocks: back to the background order, or not fetched at all when no kept file wants them. */
  private unprioritise(hashes: readonly BlockHash[]): void {
    this.scheduler.unprioritise(hashes);
    const unwanted = hashes.filter((hash) => !this.live.isWanted(hash));
    if (unwanted.length > 0) this.scheduler.removeWanted(unwanted);
  }

  /** New sources (peers) are usable: start fetches that were waiting for one. */
  sourcesChanged(): void {
    this.scheduler.wake();
  }

  /** Sources' claims on these blocks changed (a peer's HAVE, a peer fetching them): only they are looked at again. */
  blocksChanged(hashes: Iterable<BlockHash>): void {
    this.scheduler.recheckBlocks(hashes);
  }

  /** A peer misbehaved (malformed frames): stop asking it for blocks this session. */
  penalise(sourceId: string): void {
    this.scheduler.penalise(sourceId);
    this.options.onPenalised?.(sourceId);
  }

  /** Last journal entry folded into the file table. */
  get cursor(): number {
    return this.cursorValue;
  }

  /** Last cursor at which every block of every live file was stored. */
  get syncedCursor(): number {
    return this.syncedCursorValue;
  }

  /** Whether this device may hand `hash` to a peer: stored, and part of a live file. */
  holdsLiveBlock(hash: BlockHash): boolean {
    return this.live.isLive(hash) && this.live.holds(hash);
  }

  /** Whether a live file uses `hash` (stored here or not). */
  isLiveBlock(hash: BlockHash): boolean {
    return this.live.isLive(hash);
  }

  /**
   * These blocks were removed from this device's store (no live file used them): forget
   * them, and fetch again any that a file has needed since.
   */
  forgetBlocks(hashes: readonly BlockHash[]): void {
    if (hashes.length === 0) return;
    this.noteAllChanged();
    this.plan(this.live.forget(hashes));
  }

  /** True while some live file lacks blocks here (what peers are worth connecting for). */
  isMissingBlocks(): boolean {
    return this.syncedCursorValue < this.cursorValue || !this.scheduler.idle;
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
    return [...this.live.heldLive()];
  }

  file(path: string): FileRecord | undefined {
    return this.files.get(path as FilePath);
  }

  /** Every live file (for a full view; per-change work should use drainChangedFiles). */
  liveFiles(): IterableIterator<FileRecord> {
    return this.files.values();
  }

  /**
   * Paths whose record, progress or status changed since the last call (removed paths
   * included: `file()` no longer knows them). What a view applies to stay current.
   */
  drainChangedFiles(): FilePath[] {
    if (!this.changedFiles) throw new Error('drainChangedFiles needs the trackFileChanges option');
    const { all, paths } = this.changedFiles.drain();
    return all ? [...new Set([...paths, ...this.files.keys()])] : paths;
  }

  /**
   * A feed of its own for one more follower of the file table (folder sync): the paths that
   * changed since its last `drain()`, so it works per change, not per workspace. Close it when done.
   */
  watchFileChanges(): FileChangeFeed {
    const feed = new FileChangeFeed((closed) => this.feeds.delete(closed));
    this.feeds.add(feed);
    return feed;
  }

  private noteChanged(path: FilePath): void {
    for (const feed of this.feeds) feed.add(path);
  }

  /** Every file changed (a keep policy, forgotten blocks): each feed says 'all' once. */
  private noteAllChanged(): void {
    for (const feed of this.feeds) feed.addAll();
  }

  /** One live file's progress, or undefined when the path is not live. */
  fileProgress(path: FilePath, inFlight: ReadonlySet<BlockHash> = this.scheduler.inFlight()): FileProgress | undefined {
    const file = this.files.get(path);
    if (!file) return undefined;
    const onlineOnly = this.live.isOnlineOnly(path);
    if (this.live.isComplete(path)) return { file, bytesDone: file.size, status: 'synced', bytesPerSecond: 0, onlineOnly };
    const fetching = file.blocks.some((hash) => inFlight.has(hash));
    return {
      file,
      bytesDone: this.live.bytesDone(path),
      status: fetching ? 'syncing' : onlineOnly ? 'online' : 'waiting',
      bytesPerSecond: this.fileRates.get(path)?.bytesPerSecond(this.now()) ?? 0,
      onlineOnly,
    };
  }

  /** The blocks being fetched right now (pass to fileProgress when asking about many files). */
  blocksInFlight(): ReadonlySet<BlockHash> {
    return this.scheduler.inFlight();
  }

  /** Totals without the per-file list: cheap at any workspace size. */
  summary(): Omit<EngineSnapshot, 'files'> & { fileCount: number } {
    return {
      cursor: this.cursorValue,
      syncedCursor: this.syncedCursorValue,
      fileCount: this.files.size,
      totalBytes: this.live.totalBytes,
      doneBytes: this.live.doneBytes,
      bytesPerSecond: this.totalRate.bytesPerSecond(this.now()),
      bytesFromServer: this.bytesFromServer,
      bytesFromPeers: this.bytesFromPeers,
      error: this.error,
      storageFull: this.storageFull,
      onlineFileCount: this.live.onlineFileCount,
      onlineBytes: this.live.onlineBytes,
      cacheBytes: this.cache.bytes,
    };
  }

  /**
   * This device is about to store `hashes` itself (an upload keeping its copy after the
   * commit): they are not fetched until `localStoreEnded` says how it went.
   */
  storingLocally(hashes: readonly BlockHash[]): void {
    for (const hash of hashes) if (!this.storedLocallySoon.has(hash)) this.storedLocallySoon.set(hash, null);
  }

  /**
   * The local keep of `hashes` is over: those in `stored` are noted as stored, the rest (the
   * source changed, the store refused) are fetched like any missing block.
   */
  async localStoreEnded(hashes: readonly BlockHash[], stored: readonly BlockHash[]): Promise<void> {
    const deferred: WantedBlock[] = [];
    for (const hash of hashes) {
      const want = this.storedLocallySoon.get(hash);
      this.storedLocallySoon.delete(hash);
      if (want) deferred.push(want);
    }
    await this.noteStoredBlocks(stored);
    const still = deferred.filter((want) => this.live.isWanted(want.hash));
    if (still.length > 0) this.plan({ added: still, removed: [] });
  }

  /** Blocks stored on this device by someone else (an upload in this or another tab). */
  async noteStoredBlocks(hashes: readonly BlockHash[]): Promise<void> {
    const removed: BlockHash[] = [];
    for (const hash of hashes) {
      const wanted = this.live.isWanted(hash);
      for (const path of this.live.stored(hash)) this.noteChanged(path);
      if (wanted) removed.push(hash);
    }
    this.plan({ added: [], removed });
  }

  /** Every live file with its progress: O(workspace). For occasional callers (the LAN daemon, tests). */
  snapshot(): EngineSnapshot {
    const inFlight = this.scheduler.inFlight();
    const files: FileProgress[] = [];
    for (const path of this.files.keys()) files.push(this.fileProgress(path, inFlight)!);
    const { fileCount: _count, ...summary } = this.summary();
    return { ...summary, files };
  }

  private async followJournal(): Promise<void> {
    let caughtUp = false;
    let failures = 0;
    while (!this.stopped) {
      try {
        const page = await this.options.journal.readPage(this.cursorValue, {
          // The protocol's largest page: a join of 100,000 files is 100 pages, not 500.
          limit: this.options.pageLimit ?? MAX_JOURNAL_PAGE,
          waitSeconds: caughtUp ? (this.options.longPollSeconds ?? 25) : 0,
          signal: this.pollAbort.signal,
        });
        if (page.entries.length > 0) await this.applyPage(page.entries);
        if (!caughtUp && !page.more && !this.caughtUpOnce) {
          this.caughtUpOnce = true;
          this.options.onCaughtUp?.();
        }
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
    const before = new Map<FilePath, FileRecord | undefined>();
    for (const entry of entries) if (!before.has(entry.path)) before.set(entry.path, this.files.get(entry.path));
    const { changed, removed } = foldEntries(this.files, entries);
    const cursor = entries[entries.length - 1].sjid;
    try {
      await this.options.state.applyPage(this.options.ns, changed, removed, cursor);
    } catch (error) {
      // The in-memory table ran ahead of what was persisted: put back what this page changed.
      for (const [path, record] of before) {
        if (record) this.files.set(path, record);
        else this.files.delete(path);
      }
      throw error;
    }
    for (const path of removed) this.fileRates.delete(path);
    await this.learnStoredBlocks(changed);
    // Only now: plan() marks this cursor synced when nothing is missing, so the page's files must be in.
    this.cursorValue = cursor;
    const changes = [
      ...removed.map((path) => ({ path, next: null })),
      ...[...changed].sort((a, b) => a.sjid - b.sjid).map((file) => ({ path: file.path, next: file })),
    ];
    for (const { path } of changes) this.noteChanged(path);
    this.plan(this.live.apply(changes));
    await this.keepHeldBlocks(changed).catch(() => undefined);
  }

  private async learnStoredBlocks(files: readonly FileRecord[]): Promise<void> {
    const unknown = new Set<BlockHash>();
    for (const file of files) for (const hash of file.blocks) if (!this.live.holds(hash)) unknown.add(hash);
    if (unknown.size === 0) return;
    this.live.markStored(await this.options.blocks.hasBlocks([...unknown]));
  }

  /** Whether `want` waits for this device's own keep of its block (storingLocally). */
  private deferToLocalStore(want: WantedBlock): boolean {
    if (!this.storedLocallySoon.has(want.hash)) return false;
    this.storedLocallySoon.set(want.hash, want);
    return true;
  }

  /** Hands the scheduler what a change added to and removed from the wanted set. */
  private plan(delta: WantDelta): void {
    if (delta.removed.length > 0) this.scheduler.removeWanted(delta.removed);
    const added = this.storedLocallySoon.size === 0 ? delta.added : delta.added.filter((want) => !this.deferToLocalStore(want));
    if (added.length > 0) this.scheduler.addWanted(spreadFetchOrder(added, this.options.fetchOrderSeed ?? 0));
    this.plannedCursor = this.cursorValue;
    // In sync is decided by the blocks stored, not by the scheduler going idle: a fetch it
    // still waits for (say, from a peer that vanished) must not hold back the advert.
    if (this.live.missingCount === 0) void this.markSynced(this.plannedCursor);
  }

  /**
   * The store refused a block for lack of space: stop asking sources (what is stored stays),
   * say how much more is needed, and look again every few seconds; fetching resumes by
   * itself once at least a block's worth is free (if it is still too little, the next
   * refusal pauses again with a fresh figure).
   */
  private async pauseForStorage(): Promise<void> {
    // Kept files come first: the cache of online-only blocks makes room before anything pauses.
    if (this.evictCache(true) > 0) {
      this.scheduler.wake();
      return;
    }
    const first = this.storageFull === null || this.storageRetrying;
    this.storageRetrying = false;
    this.storageFull = await this.storageFullState();
    if (this.stopped) return;
    this.options.onChange?.();
    if (first) this.scheduleStorageCheck();
  }

  private async storageFullState(): Promise<StorageFullState> {
    const free = (await this.options.freeSpace?.().catch(() => null)) ?? null;
    const remaining = Math.max(0, this.live.totalBytes - this.live.doneBytes);
    // An estimate that claims room for everything while writes fail is wrong: ask for it all.
    const needed = free !== null && free < remaining ? remaining - free : remaining;
    return { remainingBytes: remaining, freeBytes: free, neededBytes: Math.max(1, needed) };
  }

  private scheduleStorageCheck(): void {
    if (this.storageTimer) clearTimeout(this.storageTimer);
    this.storageTimer = setTimeout(() => {
      this.storageTimer = null;
      void this.checkStorage();
    }, this.options.storagePollMs ?? 3_000);
  }

  private async checkStorage(): Promise<void> {
    if (this.stopped || !this.storageFull) return;
    const fits = this.options.canStore ? await this.options.canStore(RESUME_MIN_FREE).catch(() => false) : true;
    if (this.stopped || !this.storageFull) return;
    if (fits) {
      this.storageRetrying = true;
      this.scheduler.wake();
      return;
    }
    this.storageFull = await this.storageFullState();
    this.options.onChange?.();
    this.scheduleStorageCheck();
  }

  private noteFilesOf(hash: BlockHash): void {
    for (const path of this.live.filesWaitingFor(hash)) this.noteChanged(path);
  }

  private onBlockStored(hash: BlockHash, bytes: number, source: BlockSource): void {
    const readers = this.readers.get(hash);
    if (readers) {
      this.readers.delete(hash);
      for (const reader of readers) reader.resolve();
    }
    const now = this.now();
    const paths = this.live.stored(hash);
    if (this.live.isLive(hash) && !this.live.isKeptBlock(hash)) {
      this.cache.touch(hash, bytes);
      this.evictCache();
    }
    for (const path of paths) {
      this.noteChanged(path);
      let meter = this.fileRates.get(path);
      if (!meter) this.fileRates.set(path, (meter = new RateMeter()));
      meter.add(bytes, now);
    }
    if (this.live.missingCount === 0) void this.markSynced(this.plannedCursor);
    this.totalRate.add(bytes, now);
    if (source.kind === 'server') this.bytesFromServer += bytes;
    else this.bytesFromPeers += bytes;
    if (this.error?.startsWith('Could not')) this.error = null;
    if (this.storageFull) {
      this.storageFull = null;
      this.storageRetrying = false;
    }
    this.options.onBlockStored?.(hash, bytes, source.id);
    this.options.onChange?.();
  }

  private async markSynced(cursor: number): Promise<void> {
    if (cursor <= this.syncedCursorValue || this.stopped) return;
    this.syncedCursorValue = cursor;
    this.fileRates.clear();
    await this.options.state.setSyncedCursor(this.options.ns, cursor);
    this.options.onSynced?.(cursor);
    this.options.onChange?.();
  }
}

interface BlockReader {
  resolve(): void;
  reject(reason: unknown): void;
}

const MAX_JOURNAL_PAGE = 1000;

/** Cache of online-only blocks: 1 GiB unless the device says otherwise. */
const DEFAULT_CACHE_LIMIT = 1024 * 1024 * 1024;
/** Blocks a sequential reader may read ahead at most (readAheadBlocks). */
const MAX_READ_AHEAD_BLOCKS = 8;

/** The blocks of this many recent reads are never evicted (their readers are still at them). */
const RECENT_READS_SPARED = 4;

/** Free space worth resuming for: one full block, so a resume is not refused at once. */
const RESUME_MIN_FREE = 4 * 1024 * 1024;

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
