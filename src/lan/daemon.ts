import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BlockServer } from '../engine/block-server.ts';
import { NamespaceSync } from '../engine/namespace-sync.ts';
import { ServerApi } from '../engine/server-api.ts';
import { ServerBlockSource } from '../engine/server-source.ts';
import type { BlockSource, LocalBlockStore } from '../engine/types.ts';
import { expectRecord, parseCursor, parseDeviceLabel, type BlockHash, type FilePath, type NamespaceId } from '../protocol/index.ts';
import { FolderWatcher } from './folder/folder-watcher.ts';
import { LocalChanges } from './folder/local-changes.ts';
import { FileAssembly } from './folder/file-assembly.ts';
import { FolderBlockStore } from './folder/folder-block-store.ts';
import { FolderMaterialiser, MissingBlockError, printable, type JournalView } from './folder/materialiser.ts';
import { TaskRunner } from './folder/task-runner.ts';
import { TolerantJournalClient } from './tolerant-journal.ts';
import type { Membership } from './membership.ts';
import { collectUnusedBlocks } from './store/block-gc.ts';
import { DiskBlockStore } from './store/disk-block-store.ts';
import { nodeSha256 } from './store/node-sha256.ts';
import { SqliteStateStore } from './store/sqlite-state-store.ts';

export interface PeerDaemonOptions {
  membership: Membership;
  dir: string;
  stateDir: string;
  cacheOnly: boolean;
  log: (line: string) => void;
  /** Safety-net rescan of the folder (the watcher is the fast path). */
  rescanMs?: number;
  /** Quiet time after a folder event before the folder is scanned. */
  debounceMs?: number;
  longPollSeconds?: number;
  /** How often blocks no live file uses are removed (default 1 h; 0: never). */
  blockGcMs?: number;
  /** Blocks stored more recently than this are never removed (default 1 h). */
  blockGraceMs?: number;
  /** This peer's label (default: the host name). */
  device?: string;
}

const DEFAULT_BLOCK_GC_MS = 3_600_000;
const FALLBACK_DEVICE_LABEL = 'nearsync peer';

/** A valid device label from a host name (which may be empty, long or odd). */
function deviceLabel(name: string): string {
  try {
    return parseDeviceLabel(name.slice(0, 40));
  } catch {
    return FALLBACK_DEVICE_LABEL;
  }
}
const DEFAULT_BLOCK_GRACE_MS = 3_600_000;

/** Fired when this daemon committed a local file: its blocks are servable from now on. */
export type CommittedListener = (ns: NamespaceId, sjid: number, blocks: readonly BlockHash[]) => void;

/** Fired whenever every block of every live file is stored up to `cursor` (what a LAN advert may claim). */
export type SyncedListener = (ns: NamespaceId, cursor: number) => void;

/**
 * The native peer: one workspace, the engine with on-disk adapters, and (unless
 * cache-only) the folder kept in step both ways. It exposes what the LAN transports need:
 * `blockServer` to answer block requests, `addSource`/`removeSource` for LAN peers as block
 * sources, and `syncedCursor` / `onSynced` for adverts.
 */
export class PeerDaemon {
  readonly ns: NamespaceId;
  /** This peer's label in version history and conflicted-copy names (the host name by default). */
  readonly device: string;
  readonly api: ServerApi;
  /** The serving rule for LAN peers: live blocks of this workspace that are stored here. */
  readonly blockServer: BlockServer;
  private readonly sync: NamespaceSync;
  private readonly extraSources = new Map<string, BlockSource>();
  private readonly serverSource: ServerBlockSource;
  private readonly syncedListeners = new Set<SyncedListener>();
  private readonly penalisedListeners = new Set<(sourceId: string) => void>();
  private readonly committedListeners = new Set<CommittedListener>();
  /** Blocks of our own commits whose entries the engine has not synced past yet: hash → sjid. */
  private readonly ownCommits = new Map<BlockHash, number>();
  private readonly runner: TaskRunner;
  private readonly materialiser: FolderMaterialiser | null;
  private readonly localChanges: LocalChanges | null;
  private watcher: FolderWatcher | null = null;
  private lastSynced = 0;
  /** A synced cursor not yet reported: in folder mode "in sync" waits until the files are in place. */
  private inSyncPending: number | null = null;
  private readonly assembly: FileAssembly | null;
  private gcTimer: NodeJS.Timeout | null = null;
  private gcRun: Promise<void> | null = null;

  /**
   * Every block this daemon holds, as the engine and LAN peers see it: the block store itself
   * for a cache box; in folder mode the folder's files and the staging store (FolderBlockStore).
   */
  readonly blocks: LocalBlockStore;
  private readonly folderBlocks: FolderBlockStore | null;

  private constructor(
    private readonly options: PeerDaemonOptions,
    /** The block store in the state dir: everything for a cache box; in folder mode, only what no file holds. */
    private readonly staging: DiskBlockStore,
    readonly state: SqliteStateStore,
  ) {
    const { membership, log } = options;
    this.ns = membership.namespaceId;
    this.device = deviceLabel(options.device ?? hostname());
    // The label goes with every commit (version history) and names this peer's conflicted copies.
    this.api = new ServerApi(membership.server, membership.token, undefined, this.device);
    this.serverSource = new ServerBlockSource(this.api);
    this.assembly = options.cacheOnly
      ? null
      : new FileAssembly(options.dir, log, {
          wanted: (hash) => this.sync.isLiveBlock(hash),
          keep: (hash, bytes) => staging.putHashed(hash, bytes),
          lost: (hashes) => this.sync.forgetBlocks(hashes),
        });
    // A file changed under us serves no blocks until scanned (and committed) again.
    this.folderBlocks = this.assembly
      ? new FolderBlockStore(staging, this.assembly, options.dir, state, () => this.runner.request('scan', options.debounceMs ?? 300))
      : null;
    this.blocks = this.folderBlocks ?? staging;
    const blocks = this.blocks;
    this.sync = new NamespaceSync({
      ns: this.ns,
      journal: new TolerantJournalClient(membership.server, this.ns, membership.token, (sjid, path, reason) =>
        log(`refused journal entry ${sjid} (${printable(String(path)).slice(0, 200)}): ${reason}`),
      ),
      state,
      blocks,
      sha256: nodeSha256,
      sources: () => [...this.extraSources.values(), this.serverSource],
      longPollSeconds: options.longPollSeconds ?? 25,
      // Each device its own fetch order, so peers starting together fetch different blocks first.
      fetchOrderSeed: Math.floor(Math.random() * 2 ** 31) + 1,
      // Not debounced: while blocks stream in, the materialiser still runs (finishing files,
      // and telling the file assembly which files to write as their blocks arrive).
      onChange: () => this.runner.requestWithin('materialise', 100),
      onSynced: (cursor) => this.synced(cursor),
      onPenalised: (sourceId) => {
        for (const listener of this.penalisedListeners) listener(sourceId);
      },
    });
    this.blockServer = new BlockServer(blocks, async (ns, hash) => ns === this.ns && this.holdsLiveBlock(hash));
    this.materialiser = options.cacheOnly ? null : new FolderMaterialiser({ root: options.dir, state, blocks, log, host: this.device, assembly: this.assembly ?? undefined });
    this.localChanges = options.cacheOnly
      ? null
      : new LocalChanges({
          ns: this.ns,
          root: options.dir,
          api: this.api,
          state,
          blocks,
          liveFile: (path) => this.sync.file(path),
          cursor: () => this.sync.cursor,
          onCommitted: (sjid, hashes) => this.committed(sjid, hashes),
          tempInUse: (absolute) => this.assembly?.ownsTemp(absolute) ?? false,
          log,
        });
    this.runner = new TaskRunner(
      {
        materialise: () => this.materialise().finally(() => this.evictStaged()),
        scan: () => (this.localChanges?.scan() ?? Promise.resolve()).finally(() => this.evictStaged()),
      },
      (job, error) => log(`${job === 'scan' ? 'uploading local changes' : 'writing the folder'} failed: ${(error as Error).message}; will retry`),
    );
  }

  static async open(options: PeerDaemonOptions): Promise<PeerDaemon> {
    // A cache box's blocks are what it is for: fsynced. A folder's files are its durable copy.
    const blocks = await DiskBlockStore.open(join(options.stateDir, 'blocks'), { durable: options.cacheOnly });
    const state = new SqliteStateStore(join(options.stateDir, 'state.db'));
    if (!options.cacheOnly) await mkdir(options.dir, { recursive: true });
    return new PeerDaemon(options, blocks, state);
  }

  async start(): Promise<void> {
    const { log } = this.options;
    // Before the engine asks which blocks are here: those in a killed run's temp files are.
    await this.resumeTempFiles();
    await this.sync.start();
    this.startBlockGc();
    const before = this.sync.snapshot();
    log(`resuming at journal entry ${before.cursor} (${before.files.length} files known)`);
    if (this.options.cacheOnly) {
      log('cache-only: keeping blocks, writing no files');
      return;
    }
    // Local edits are judged against the journal as it is now, not as it was when we stopped.
    await this.waitForJournalHead();
    await this.runner.runNow('materialise');
    await this.runner.runNow('scan');
    const rescanMs = this.options.rescanMs ?? 30_000;
    this.watcher = new FolderWatcher(this.options.dir, () => this.runner.request('scan', this.options.debounceMs ?? 300), rescanMs, log);
    log(`watching ${this.options.dir}`);
  }

  async stop(): Promise<void> {
    if (this.gcTimer) clearInterval(this.gcTimer);
    this.gcTimer = null;
    await this.gcRun;
    this.watcher?.close();
    await this.sync.stop();
    await this.runner.stop();
    await this.assembly?.close();
    this.folderBlocks?.flush();
    this.state.close();
  }

  /** A LAN peer (or the bridge) as one more block source; the scheduler weighs it by throughput. */
  addSource(source: BlockSource): void {
    this.extraSources.set(source.id, source);
    this.sync.sourcesChanged();
  }

  removeSource(id: string): void {
    this.extraSources.delete(id);
  }

  sourcesChanged(): void {
    this.sync.sourcesChanged();
  }

  /** A source broke the protocol: stop asking it this session. */
  penalise(sourceId: string): void {
    this.sync.penalise(sourceId);
  }

  get syncedCursor(): number {
    return this.sync.syncedCursor;
  }

  onSynced(listener: SyncedListener): () => void {
    this.syncedListeners.add(listener);
    return () => this.syncedListeners.delete(listener);
  }

  /** A source was caught lying (bytes failing their hash) or breaking the protocol: it is not asked again. */
  onPenalised(listener: (sourceId: string) => void): () => void {
    this.penalisedListeners.add(listener);
    return () => this.penalisedListeners.delete(listener);
  }

  /** Stored blocks of live files (what a LAN peer may fetch from us; for HAVE announcements). */
  heldLiveBlocks(): BlockHash[] {
    return this.sync.heldLiveBlocks();
  }

  /**
   * Whether a block belongs to a live file of this workspace and is stored here. A block we
   * just committed counts before the engine reads the entry back, so a LAN peer that hears
   * of the commit first is served rather than sent to the server.
   */
  holdsLiveBlock(hash: BlockHash): boolean {
    return this.sync.holdsLiveBlock(hash) || this.ownCommits.has(hash);
  }

  onCommitted(listener: CommittedListener): () => void {
    this.committedListeners.add(listener);
    return () => this.committedListeners.delete(listener);
  }

  private committed(sjid: number, hashes: readonly BlockHash[]): void {
    for (const hash of hashes) this.ownCommits.set(hash, Math.max(sjid, this.ownCommits.get(hash) ?? 0));
    for (const listener of this.committedListeners) listener(this.ns, sjid, hashes);
  }

  snapshot() {
    return this.sync.snapshot();
  }

  refusedPaths(): ReadonlyMap<FilePath, string> {
    return this.materialiser?.refusedPaths() ?? new Map();
  }

  private async materialise(): Promise<void> {
    if (!this.materialiser) return;
    const snapshot = this.sync.snapshot();
    const view: JournalView = {
      cursor: snapshot.cursor,
      files: snapshot.files.map((progress) => ({ file: progress.file, complete: progress.status === 'synced' })),
    };
    let inPlace: boolean;
    try {
      inPlace = await this.materialiser.apply(view);
    } catch (error) {
      // A block the engine counted as stored is gone (torn by a power cut, or removed): fetch it again.
      if (error instanceof MissingBlockError) this.sync.forgetBlocks([error.hash]);
      throw error;
    }
    const pending = this.inSyncPending;
    if (inPlace && pending !== null && view.cursor >= pending) {
      this.inSyncPending = null;
      this.logInSync(pending);
    }
  }

  /** Adopts the temp files an earlier run left for files not in place yet, keeping their verified blocks. */
  private async resumeTempFiles(): Promise<void> {
    if (!this.assembly) return;
    const { files } = await this.state.load(this.ns);
    const incomplete = files.filter((file) => (this.state.folderRecord(file.path)?.sjid ?? 0) < file.sjid);
    const found = await this.assembly.recover(incomplete);
    if (found > 0) this.options.log(`resuming ${found} blocks from temp files a previous run left`);
  }

  /** Blocks now in recorded files leave the staging store (the folder holds them). */
  private async evictStaged(): Promise<void> {
    await this.folderBlocks?.evictRecorded((hash) => this.localChanges?.isUploading(hash) ?? false);
  }

  private logInSync(cursor: number): void {
    const snapshot = this.sync.snapshot();
    this.options.log(`in sync at journal entry ${cursor}: ${snapshot.files.length} files, ${snapshot.totalBytes} bytes`);
  }

  private synced(cursor: number): void {
    if (cursor > this.lastSynced) {
      // The blocks are all here; the folder is in sync only once the materialiser wrote them out.
      if (this.materialiser) {
        this.inSyncPending = cursor;
        this.runner.request('materialise', 0);
      } else this.logInSync(cursor);
    }
    this.lastSynced = cursor;
    // From here the engine's own live table answers for these blocks (they may since be overwritten).
    for (const [hash, sjid] of this.ownCommits) if (sjid <= cursor) this.ownCommits.delete(hash);
    for (const listener of this.syncedListeners) listener(this.ns, cursor);
  }

  private startBlockGc(): void {
    const everyMs = this.options.blockGcMs ?? DEFAULT_BLOCK_GC_MS;
    if (everyMs === 0) return;
    this.gcTimer = setInterval(() => {
      this.gcRun ??= this.collectUnusedBlocks().finally(() => (this.gcRun = null));
    }, everyMs);
    this.gcTimer.unref();
  }

  /** Old versions' blocks are never served (only live ones are) nor written: they only fill the disk. */
  private async collectUnusedBlocks(): Promise<void> {
    try {
      const result = await collectUnusedBlocks(this.staging, {
        inUse: (hash) => this.sync.isLiveBlock(hash) || this.ownCommits.has(hash) || (this.localChanges?.isUploading(hash) ?? false),
        graceMs: this.options.blockGraceMs ?? DEFAULT_BLOCK_GRACE_MS,
      });
      this.sync.forgetBlocks(result.removed);
      if (result.removed.length > 0) {
        this.options.log(`cache: removed ${result.removed.length} blocks no live file uses (${(result.bytesFreed / 1048576).toFixed(1)} MiB); ${result.kept} kept`);
      }
    } catch (error) {
      this.options.log(`cache: removing unused blocks failed: ${(error as Error).message}; will retry`);
    }
  }

  private async waitForJournalHead(): Promise<void> {
    let head: number;
    try {
      const response = await fetch(`${this.options.membership.server}/api/v1/ns/${this.ns}`, {
        headers: { authorization: `Bearer ${this.options.membership.token}` },
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      head = parseCursor(expectRecord(await response.json(), 'workspace').cursor);
    } catch (error) {
      this.options.log(`could not read the journal head (${(error as Error).message}); scanning the folder anyway`);
      return;
    }
    const deadline = Date.now() + 30_000;
    while (this.sync.cursor < head && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
