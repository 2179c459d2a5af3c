import { NamespaceSync } from '../src/engine/namespace-sync.ts';
import type { ServerApi } from '../src/engine/server-api.ts';
import { ServerBlockSource } from '../src/engine/server-source.ts';
import { CommitConflictError } from '../src/engine/commit-conflict.ts';
import type { ConditionalCommits } from '../src/engine/conflict-copies.ts';
import { restoreVersion } from '../src/engine/restore-version.ts';
import { commitWithBlocks } from '../src/engine/uploader.ts';
import type { BlockSource, FileRecord, WantedBlock } from '../src/engine/types.ts';
import { fetchFromServerNow } from '../src/engine/server-fetch-now.ts';
import { PieceTaps } from '../src/engine/piece-taps.ts';
import { parseFilePath, type BridgeReadOut, type BridgeReadReply, type FilePath, type NamespaceId } from '../src/protocol/index.ts';
import type { IdbBlockStore, IdbStateStore, WorkspaceRecord } from './idb-store.ts';
import { KeepPolicy, type KeepMode, type KeepSetting } from '../src/engine/keep-policy.ts';
import type { BlockHash } from '../src/protocol/index.ts';
import type { FileView, FolderListing, JoinAnswer, JoinQuestion, ListingRow, FolderQuery, PeerAdvert, PeerTransport, StorageView, SyncRole, UploadInput, UploadPart, WorkspaceView } from './sync-api.ts';
import { blockBuffers } from './block-buffers.ts';
import { PeerHub } from './peer-hub.ts';
import { UploadQueue } from './upload-queue.ts';
import { ViewPacer } from './view-pacer.ts';
import { walkFolders } from './folder-walk.ts';
import { storageEstimate } from './storage-estimate.ts';
import { sha256 } from './web-crypto.ts';
import { WorkspaceTree, type FileDelta } from './workspace-tree.ts';
import type { ZipSource } from './zip-export.ts';
import type { PieceLease } from './file-reads.ts';
import { allFileViews, changedFileDeltas, emptySharedView, fullView, sharedViewOf, type SharedView } from './workspace-view.ts';

export interface WorkspaceSessionDeps {
  record: WorkspaceRecord;
  api: ServerApi;
  blocks: IdbBlockStore;
  state: IdbStateStore;
  /** This browser's label: in its conflicted copies' names. */
  device: string;
  /** This device's keep settings of the workspace (undefined: the user has not chosen yet). */
  keep: {
    load(): Promise<KeepSetting[] | undefined>;
    save(settings: KeepSetting[]): Promise<void>;
  };
  /** Removes evicted cache blocks from the store (those no other open workspace keeps). */
  evictBlocks(hashes: readonly BlockHash[]): Promise<void>;
}

/**
 * Between tabs: the leader sends its summary with the file deltas since the last one, and
 * every file at once when a tab says hello or a new leader starts. A follower answers a
 * `full` it did not ask for with `present`. Until a follower has made itself known, the
 * leader leaves the deltas out (a 100,000-file join posted every file's changes to nobody);
 * the first follower to appear after that gets every file at once.
 */
type TabMessage =
  | { type: 'view'; view: SharedView; deltas: FileDelta[] }
  | { type: 'full'; view: SharedView; files: FileView[] }
  | { type: 'hello' }
  | { type: 'present' }
  /** The keep settings changed in some tab (read them from storage). */
  | { type: 'keep' };

/**
 * An upload that finished or failed shows within this of the last view: the user is waiting
 * for it, and an upload's progress views keep the 200 ms pace below busy, so a finished 64 MiB
 * upload showed done up to 200 ms late (a third of its time on loopback). Settles come in
 * bursts (a batch of small files commits at once), so this still bounds the views.
 */
const SETTLED_VIEW_INTERVAL_MS = 50;
/** Views for changes someone looks for (an action's result, a role, a question): at most this often… */
const VIEW_INTERVAL_MS = 200;
/** …and for progress (bytes moving, counters, the tick): see ViewPacer. */
const PROGRESS_VIEW_INTERVAL_MS = 500;
const STORED_SJIDS_FOR_MS = 5_000;
const TICK_MS = 1000;
/** How often the storage figures shown are refreshed. */
const STORAGE_EVERY_TICKS = 5;
/**
 * Largest real test write when a join checks that the files fit: browsers' estimates ignore
 * a lowered quota, and a write of the whole workspace would cost as much as the join.
 */
const JOIN_FIT_PROBE_BYTES = 16 * 1024 * 1024;

/**
 * One open workspace in this tab. Tabs of one browser share IndexedDB, so only the tab
 * holding the workspace's Web Lock syncs (leader); the others mirror the leader's view
 * over a BroadcastChannel (followers) and take over when the leader goes away.
 * Uploads, renames and deletes work from any tab: they talk to the server directly.
 */
export class WorkspaceSession {
  private role: SyncRole = 'connecting';
  private engine: NamespaceSync | null = null;
  private shared: SharedView;
  /** The folder tree the page lists from: fed by the engine (leader) or the leader's messages. */
  private readonly tree = new WorkspaceTree();
  private storage: StorageView | null = null;
  private ticks = 0;
  private readonly listeners = new Set<(view: WorkspaceView) => void>();
  private readonly channel: BroadcastChannel;
  private readonly lockAbort = new AbortController();
  private releaseLeadership: (() => void) | null = null;
  private readonly pacer = new ViewPacer(() => this.push());
  /** Follower: the stored table's sjids by path, read for a drop's parents (see knownSjids). */
  private storedSjids: { at: number; sjids: Promise<Map<string, number>> } | null = null;
  /** Leader: whether another tab has said it mirrors this workspace, and whether deltas went unsent since the last `full`. */
  private followersPresent = false;
  private deltasUnsent = false;
  /** Follower: a `hello` is out and its `full` not yet in. */
  private awaitingFull = false;
  private tickTimer: ReturnType<typeof setInterval> | null = null;
  private readonly uploads: UploadQueue;
  private readonly server: BlockSource;
  private readonly peers: PeerHub;
  /** Blocks file reads wait for, watched piece by piece as peers send them. */
  private readonly taps = new PieceTaps(sha256);
  private closed = false;
  /** This device's keep settings as last read or written. */
  private keep: KeepSetting[] = [];
  /** Leader: the question a join that will not fit asks, until answered. */
  private joinQuestion: JoinQuestion | null = null;

  constructor(private readonly deps: WorkspaceSessionDeps) {
    const ns = deps.record.namespaceId;
    this.shared = emptySharedView(deps.record);
    this.peers = new PeerHub({
      ns,
      blocks: deps.blocks,
      engine: () => this.engine,
      onSourcesChanged: () => this.engine?.sourcesChanged(),
      onBlocksChanged: (hashes) => this.engine?.blocksChanged(hashes),
      onChange: () => this.schedulePush('progress'),
      buffers: blockBuffers,
      taps: this.taps,
    });
    this.server = this.peers.gateServer(new ServerBlockSource(deps.api, undefined, blockBuffers));
    this.uploads = new UploadQueue({
      ns,
      api: deps.api,
      device: deps.device,
      knownSjids: (paths) => this.knownSjids(paths),
      blocks: deps.blocks,
      sha256,
      // A finished upload is the user's own action's result: the fastest pace, not progress's.
      onChange: (settled) => this.schedulePush(settled ? 'settled' : 'progress'),
      onCommitted: (hashes) => void this.engine?.noteStoredBlocks(hashes),
      // Only where this tab syncs the workspace: a follower keeps while it uploads, so the
      // leader (another tab, not told of the keep) finds the blocks stored, not missing.
      keepAfterUpload: () => {
        const engine = this.engine;
        if (!engine) return null;
        return {
          // Read now, not this.keep, which may be older than another tab's change.
          keeps: async (path) => new KeepPolicy((await this.deps.keep.load().catch(() => undefined)) ?? this.keep).isKept(path),
          begin: (hashes) => engine.storingLocally(hashes),
          end: (hashes, stored) => void engine.localStoreEnded(hashes, stored),
        };
      },
    });
    this.channel = new BroadcastChannel(`nearsync:workspace:${ns}`);
    this.channel.onmessage = (event: MessageEvent<TabMessage>) => this.onTabMessage(event.data);
  }

  get namespaceId(): NamespaceId {
    return this.deps.record.namespaceId;
  }

  start(): void {
    const lockName = `nearsync:sync:${this.namespaceId}`;
    void navigator.locks
      .request(lockName, { ifAvailable: true }, (lock) => {
        if (lock) return this.lead();
        this.follow();
        return navigator.locks.request(lockName, { signal: this.lockAbort.signal }, () => this.lead());
      })
      .catch(() => {
        // Aborted on close while queued for the lock: nothing to release.
      });
    void this.refreshStorage();
    this.tickTimer = setInterval(() => {
      if (++this.ticks % STORAGE_EVERY_TICKS === 0) void this.refreshStorage();
      this.schedulePush('progress');
    }, TICK_MS);
  }

  /** The running engine while this tab syncs the workspace (the leader), else null. */
  syncEngine(): NamespaceSync | null {
    return this.engine;
  }

  subscribe(listener: (view: WorkspaceView) => void): void {
    this.listeners.add(listener);
    listener(this.view());
  }

  async close(): Promise<void> {
    this.closed = true;
    this.lockAbort.abort();
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.pacer.stop();
    this.channel.close();
    this.listeners.clear();
    this.peers.close();
    await this.engine?.stop();
    this.engine = null;
    this.releaseLeadership?.();
  }

  private async refreshStorage(): Promise<void> {
    this.storage = await storageEstimate().catch(() => null);
    this.schedulePush('progress');
  }

  /** Rows of the folder view; folder rows carry this device's keep mode for them. */
  list(query: FolderQuery): FolderListing {
    const listing = this.tree.list(query);
    const policy = new KeepPolicy(this.keep);
    const withMode = (row: ListingRow): ListingRow => (row.kind === 'folder' ? { ...row, keep: policy.modeOf(row.path) } : row);
    return { ...listing, rows: listing.rows.map(withMode), folderSummary: listing.folderSummary && withMode(listing.folderSummary) };
  }

  upload(inputs: UploadInput[], part?: UploadPart): void {
    this.uploads.add(inputs, part);
  }

  uploadFolders(folders: FileSystemDirectoryHandle[]): void {
    this.uploads.addWalk(walkFolders(folders));
  }

  /** Blocks a sequential file read may ask for ahead (the engine's bound; one without an engine, as the server-only path keeps none). */
  readAheadBlocks(): number {
    return this.engine?.readAheadBlocks() ?? 1;
  }

  /** A live file's record: from the running engine when this tab leads, else read from storage. */
  async fileRecord(path: FilePath): Promise<FileRecord | undefined> {
    return this.engine?.file(path) ?? (await this.deps.state.file(this.namespaceId, path));
  }

  /**
   * Makes these blocks present before the background sync's (NamespaceSync.fetchBlocksNow):
   * through the engine when this tab leads (peers first, then the server), else straight
   * from the server (another tab's engine is not reachable from here).
   */
  fetchBlocksNow(wants: readonly WantedBlock[], signal?: AbortSignal, options: { ahead?: boolean } = {}): Promise<void> {
    if (this.engine) return this.engine.fetchBlocksNow(wants, signal, options);
    return fetchFromServerNow(this.namespaceId, wants.map((want) => want.hash), this.deps.api, this.deps.blocks, sha256, signal);
  }

  /**
   * A file read's early view of a block while a peer sends it (piece-taps.ts): the server's
   * piece hashes are asked for at once, and each piece is readable once it matches. Null when
   * the block is stored already, or this tab does not lead (its engine asks no peers).
   */
  async pieceReader(want: WantedBlock): Promise<PieceLease | null> {
    if (!this.engine || (await this.deps.blocks.hasBlocks([want.hash])).size > 0) return null;
    const tap = this.taps.open(want.hash, want.sizeHint);
    const stop = new AbortController();
    if (!tap.hasPieces) {
      void this.deps.api
        .pieceHashes(this.namespaceId, [want.hash], stop.signal)
        .then((pieces) => {
          const found = pieces.get(want.hash);
          if (found) tap.setPieces(found);
        })
        // Without the list no piece is readable early: the read waits for the whole block.
        .catch(() => {});
    }
    let closed = false;
    return {
      read: (offset, signal) => tap.read(offset, signal),
      close: () => {
        if (closed) return;
        closed = true;
        stop.abort(new Error('the read moved on'));
        this.taps.close(tap);
      },
    };
  }

  /** The newest journal entry this tab knows: every live block is covered by it (a want's sjid when its file is not known). */
  get knownCursor(): number {
    return this.engine?.cursor ?? this.shared.cursor;
  }

  /**
   * What a zip of `folder` reads: the files below it from the folder tree and their records.
   * A follower tab has no engine, and reading one record from storage reads the whole table,
   * so it reads the table once for the whole zip.
   */
  async zipSource(folder: string): Promise<Omit<ZipSource, 'blocks'>> {
    const totals = this.tree.totalsOf(folder);
    if (!totals) throw new Error(`there is no folder ${folder} in this workspace`);
    const engine = this.engine;
    let record: ZipSource['record'];
    if (engine) record = (path) => engine.file(path);
    else {
      const table = new Map((await this.deps.state.load(this.namespaceId)).files.map((file) => [file.path as string, file]));
      record = (path) => table.get(path);
    }
    return { files: this.tree.filesBelow(folder), totals, folder, record };
  }

  /**
   * Commits from this tab name as their parent the live entry this device knows for the path
   * (the leader's engine, or what the leader stored), so a version another device committed
   * meanwhile is never replaced: a restore becomes a conflicted copy instead. (Uploads take
   * their parents when added: UploadQueue.)
   */
  private conditions(): ConditionalCommits {
    return {
      device: this.deps.device,
      parentOf: async (path) => (await this.fileRecord(path))?.sjid ?? 0,
    };
  }

  /** The live sjids this device knows for `paths`: the engine's table when leading, else one read of the stored table. */
  private async knownSjids(paths: readonly FilePath[]): Promise<Map<FilePath, number>> {
    const known = new Map<FilePath, number>();
    const engine = this.engine;
    if (engine) {
      for (const path of paths) {
        const file = engine.file(path);
        if (file) known.set(path, file.sjid);
      }
      return known;
    }
    // A follower reads the stored table; a drop sent in parts asks once per part, so one
    // read serves the parts of the next few seconds.
    const now = performance.now();
    if (!this.storedSjids || now - this.storedSjids.at > STORED_SJIDS_FOR_MS) {
      const sjids = this.deps.state.load(this.namespaceId).then((state) => new Map(state.files.map((file) => [file.path, file.sjid])));
      this.storedSjids = { at: now, sjids };
      sjids.catch(() => (this.storedSjids = null));
    }
    const stored = await this.storedSjids.sjids;
    for (const path of paths) {
      const sjid = stored.get(path);
      if (sjid !== undefined) known.set(path, sjid);
    }
    return known;
  }

  async rename(from: string, to: string): Promise<void> {
    const source = parseFilePath(from, 'from');
    const target = parseFilePath(to, 'to');
    if (source === target) return;
    const file = await this.fileRecord(source);
    if (!file) throw new Error(`${source} is not in this workspace`);
    // Write the new name first: a crash between the two commits leaves a copy, never a loss.
    // Both commits are conditional: a target or source changed elsewhere meanwhile is never overwritten or removed.
    try {
      await commitWithBlocks(
        this.namespaceId,
        { path: target, size: file.size, mtime: file.mtime, blocks: file.blocks, deleted: false, parent: (await this.fileRecord(target))?.sjid ?? 0 },
        this.deps.api,
        this.deps.blocks,
      );
    } catch (error) {
      if (error instanceof CommitConflictError) throw new Error(`${target} was changed on another device meanwhile: not renamed`);
      throw error;
    }
    await this.removeVersion(source, file.sjid);
  }

  async remove(path: string): Promise<void> {
    const target = parseFilePath(path);
    const file = await this.fileRecord(target);
    if (!file) return; // Not live as far as this device knows: nothing to delete.
    await this.removeVersion(target, file.sjid);
  }

  /**
   * Deletes `path` if its live entry is still `sjid`. Already deleted elsewhere: done. Changed
   * elsewhere: the newer version stays (deleting what this user never saw would lose it).
   */
  private async removeVersion(path: FilePath, sjid: number): Promise<void> {
    try {
      await commitWithBlocks(this.namespaceId, { path, size: 0, mtime: Date.now(), blocks: [], deleted: true, parent: sjid }, this.deps.api, this.deps.blocks);
    } catch (error) {
      if (!(error instanceof CommitConflictError)) throw error;
      if (error.current === null) return;
      throw new Error(`${path} was changed on another device (${error.current.device ?? 'unknown device'}) since this device saw it: not deleted`);
    }
  }

  async restoreVersion(path: string, sjid: number): Promise<{ path: string; conflicted: boolean }> {
    const kept = await restoreVersion(this.namespaceId, parseFilePath(path), sjid, this.deps.api, this.deps.blocks, this.conditions());
    return { path: kept.path, conflicted: kept.conflicted };
  }

  /**
   * Brings back a deleted file: its last live version `lastSjid`, committed with parent 0 (the
   * server listed the path as deleted; this tab's table may not have read that deletion yet,
   * and naming a stale parent would make the restore a conflicted copy for no reason). If the
   * path was written again meanwhile, the restore lands beside it as a conflicted copy.
   */
  async restoreDeleted(path: string, lastSjid: number): Promise<{ path: string; conflicted: boolean }> {
    const notLive: ConditionalCommits = { ...this.conditions(), parentOf: () => 0 };
    const kept = await restoreVersion(this.namespaceId, parseFilePath(path), lastSjid, this.deps.api, this.deps.blocks, notLive);
    return { path: kept.path, conflicted: kept.conflicted };
  }

  /** This page will not connect to peers: the server need not wait for them. */
  withoutPeers(): void {
    this.peers.setAdverts([]);
  }

  attachTransport(transport: PeerTransport): void {
    this.peers.attachTransport(transport);
  }

  setAdverts(adverts: PeerAdvert[], lanBridge = false): void {
    this.peers.setAdverts(adverts, lanBridge);
  }

  attachPeerChannel(peer: { peerId: string; label: string }, channel: RTCDataChannel | MessagePort): void {
    this.peers.attachChannel(peer, channel);
  }

  setSelfPeerId(peerId: string): void {
    this.peers.setSelfId(peerId);
  }

  bridgeRead(read: BridgeReadOut): Promise<BridgeReadReply> {
    return this.peers.bridgeRead(read);
  }

  peerClosed(peerId: string): void {
    this.peers.detach(peerId);
  }

  private async lead(): Promise<void> {
    if (this.closed) return;
    this.role = 'leader';
    const chosen = await this.deps.keep.load().catch(() => undefined);
    this.keep = chosen ?? [];
    // New to this device and nothing chosen yet: read the journal, then see whether it fits.
    const holdFetching = chosen === undefined && this.deps.record.cursor === 0;
    const engine: NamespaceSync = new NamespaceSync({
      keepPolicy: new KeepPolicy(this.keep),
      cacheLimitBytes: this.deps.record.cacheLimitBytes,
      evictBlocks: (hashes) => this.deps.evictBlocks(hashes),
      holdFetching,
      onCaughtUp: () => void this.checkJoinFits(engine),
      ns: this.namespaceId,
      journal: this.deps.api.journal(this.namespaceId),
      state: this.deps.state,
      blocks: this.deps.blocks,
      sha256,
      sources: () => [...this.peers.sources(), this.server],
      trackFileChanges: true,
      onChange: () => this.schedulePush('progress'),
      // A device holding online-only files claims nothing by cursor (advertisedCursor).
      onSynced: () => this.peers.advertise(engine.advertisedCursor),
      onBlockStored: (hash, bytes, sourceId) => this.peers.blockStored(hash, bytes, sourceId),
      onPenalised: (sourceId) => this.peers.penalised(sourceId),
      onServerFetch: (hash) => this.peers.serverFetchStarted(hash),
      freeSpace: async () => {
        const estimate = await storageEstimate();
        if (estimate) this.storage = estimate;
        return estimate && estimate.quota > 0 ? Math.max(0, estimate.quota - estimate.usage) : null;
      },
      canStore: (bytes) => this.deps.blocks.canStore(bytes),
      // Per-device order, so devices syncing together fetch different blocks from the server.
      fetchOrderSeed: 1 + Math.floor(Math.random() * 0x7ffffffe),
    });
    this.engine = engine;
    await engine.start();
    // Start the tree over from the engine: this tab may have mirrored another leader until now.
    engine.drainChangedFiles();
    this.tree.clear();
    const files = allFileViews(engine);
    this.tree.apply(files);
    this.shared = sharedViewOf(this.deps.record, engine, this.peers.views(), this.joinQuestion);
    this.deltasUnsent = false;
    this.channel.postMessage({ type: 'full', view: this.shared, files } satisfies TabMessage);
    // Announce on join: what this device already holds (cursor 0 when it holds nothing or a partial copy).
    this.peers.advertise(engine.advertisedCursor);
    this.schedulePush();
    // Hold the lock until this session closes (or the tab goes away).
    await new Promise<void>((resolve) => (this.releaseLeadership = resolve));
  }

  private follow(): void {
    this.role = 'follower';
    this.awaitingFull = true;
    this.channel.postMessage({ type: 'hello' } satisfies TabMessage);
    this.schedulePush();
  }

  /**
   * A join read the whole journal with fetching held: start fetching when the kept files fit
   * in what the browser allows, else ask the user (the view's joinQuestion) instead of failing
   * half-way. Fits means: the estimate's free space covers them, and a real test write (up to
   * JOIN_FIT_PROBE_BYTES) succeeds, since estimates ignore a lowered quota.
   */
  private async checkJoinFits(engine: NamespaceSync): Promise<void> {
    if (!engine.fetchingHeld || this.engine !== engine) return;
    const { totalBytes, doneBytes } = engine.summary();
    const needed = Math.max(0, totalBytes - doneBytes);
    const estimate = await storageEstimate().catch(() => null);
    const free = estimate && estimate.quota > 0 ? Math.max(0, estimate.quota - estimate.usage) : null;
    const fits = (free === null || needed <= free) && (await this.deps.blocks.canStore(Math.min(needed, JOIN_FIT_PROBE_BYTES)).catch(() => true));
    if (this.engine !== engine || !engine.fetchingHeld) return;
    if (fits) {
      engine.releaseFetching();
      return;
    }
    // An estimate that claims room while a real write fails is wrong (a lowered quota): not shown.
    this.joinQuestion = { neededBytes: needed, freeBytes: free !== null && free < needed ? free : null };
    this.schedulePush();
  }

  /** Keeps `folder` or makes it online only (null: it follows its parent), for every tab of this browser. */
  async setKeep(folder: string, mode: KeepMode | null): Promise<void> {
    const current = (await this.deps.keep.load()) ?? [];
    const next = new KeepPolicy(current).with(folder, mode).settings();
    await this.deps.keep.save(next);
    this.applyKeep(next);
    this.channel.postMessage({ type: 'keep' } satisfies TabMessage);
  }

  /** The user's answer to a join that will not fit: keep everything anyway, or the whole workspace online only. */
  async answerJoinQuestion(answer: JoinAnswer): Promise<void> {
    const next: KeepSetting[] = answer === 'online' ? [{ folder: '', mode: 'online' }] : [];
    await this.deps.keep.save(next);
    this.applyKeep(next);
    this.channel.postMessage({ type: 'keep' } satisfies TabMessage);
  }

  setCacheLimit(bytes: number): void {
    this.engine?.setCacheLimit(bytes);
  }

  /** New keep settings: the leader re-plans (and a held join starts: the user has chosen). */
  private applyKeep(settings: KeepSetting[]): void {
    this.keep = settings;
    const engine = this.engine;
    if (engine) {
      engine.setKeepPolicy(new KeepPolicy(settings));
      this.joinQuestion = null;
      engine.releaseFetching();
      this.peers.advertise(engine.advertisedCursor);
    }
    this.schedulePush();
  }

  private onTabMessage(message: TabMessage): void {
    if (message.type === 'keep') {
      void this.deps.keep.load().then((settings) => this.applyKeep(settings ?? []), () => undefined);
      return;
    }
    if ((message.type === 'hello' || message.type === 'present') && this.role === 'leader' && this.engine) {
      this.followersPresent = true;
      if (message.type === 'hello' || this.deltasUnsent) {
        this.deltasUnsent = false;
        this.channel.postMessage({ type: 'full', view: this.shared, files: this.tree.allFiles() } satisfies TabMessage);
      }
    }
    if (this.role !== 'follower') return;
    if (message.type === 'full') {
      if (!this.awaitingFull) this.channel.postMessage({ type: 'present' } satisfies TabMessage);
      this.awaitingFull = false;
      this.tree.clear();
      this.tree.apply(message.files);
    } else if (message.type === 'view') {
      this.tree.apply(message.deltas);
    } else {
      return;
    }
    this.shared = message.view;
    this.schedulePush();
  }

  private view(): WorkspaceView {
    return fullView(this.shared, this.role, { list: this.uploads.list(), totals: this.uploads.summary() }, this.tree.version, this.storage, this.keep);
  }

  /** A view soon: within VIEW_INTERVAL_MS of the last, PROGRESS_VIEW_INTERVAL_MS for progress, SETTLED_VIEW_INTERVAL_MS for a finished upload. */
  private schedulePush(pace: 'settled' | 'change' | 'progress' = 'change'): void {
    if (this.closed) return;
    this.pacer.request(pace === 'settled' ? SETTLED_VIEW_INTERVAL_MS : pace === 'progress' ? PROGRESS_VIEW_INTERVAL_MS : VIEW_INTERVAL_MS);
  }

  private push(): void {
    if (this.closed) return;
    if (this.role === 'leader' && this.engine) {
      const deltas = changedFileDeltas(this.engine);
      this.tree.apply(deltas);
      this.shared = sharedViewOf(this.deps.record, this.engine, this.peers.views(), this.joinQuestion);
      if (!this.followersPresent && deltas.length > 0) this.deltasUnsent = true;
      this.channel.postMessage({ type: 'view', view: this.shared, deltas: this.followersPresent ? deltas : [] } satisfies TabMessage);
    }
    const view = this.view();
    for (const listener of this.listeners) {
      Promise.resolve(listener(view)).catch(() => this.listeners.delete(listener));
    }
  }
}

