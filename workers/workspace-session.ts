import { NamespaceSync } from '../src/engine/namespace-sync.ts';
import type { ServerApi } from '../src/engine/server-api.ts';
import { ServerBlockSource } from '../src/engine/server-source.ts';
import { commitWithBlocks } from '../src/engine/uploader.ts';
import type { BlockSource, FileRecord } from '../src/engine/types.ts';
import { parseFilePath, type BridgeReadOut, type BridgeReadReply, type FilePath, type NamespaceId } from '../src/protocol/index.ts';
import type { IdbBlockStore, IdbStateStore, WorkspaceRecord } from './idb-store.ts';
import type { FileView, FolderListing, FolderQuery, PeerAdvert, PeerTransport, StorageView, SyncRole, UploadInput, WorkspaceView } from './sync-api.ts';
import { blockBuffers } from './block-buffers.ts';
import { PeerHub } from './peer-hub.ts';
import { UploadQueue } from './upload-queue.ts';
import { storageEstimate } from './storage-estimate.ts';
import { sha256 } from './web-crypto.ts';
import { WorkspaceTree, type FileDelta } from './workspace-tree.ts';
import { allFileViews, changedFileDeltas, emptySharedView, fullView, sharedViewOf, type SharedView } from './workspace-view.ts';

export interface WorkspaceSessionDeps {
  record: WorkspaceRecord;
  api: ServerApi;
  blocks: IdbBlockStore;
  state: IdbStateStore;
}

/**
 * Between tabs: the leader sends its summary with the file deltas since the last one, and
 * every file at once when a tab says hello or a new leader starts.
 */
type TabMessage =
  | { type: 'view'; view: SharedView; deltas: FileDelta[] }
  | { type: 'full'; view: SharedView; files: FileView[] }
  | { type: 'hello' };

const VIEW_INTERVAL_MS = 200;
const TICK_MS = 1000;
/** How often the storage figures shown are refreshed. */
const STORAGE_EVERY_TICKS = 5;

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
  private pushTimer: ReturnType<typeof setTimeout> | null = null;
  private lastPushAt = -Infinity;
  private tickTimer: ReturnType<typeof setInterval> | null = null;
  private readonly uploads: UploadQueue;
  private readonly server: BlockSource;
  private readonly peers: PeerHub;
  private closed = false;

  constructor(private readonly deps: WorkspaceSessionDeps) {
    const ns = deps.record.namespaceId;
    this.shared = emptySharedView(deps.record);
    this.peers = new PeerHub({
      ns,
      blocks: deps.blocks,
      engine: () => this.engine,
      onSourcesChanged: () => this.engine?.sourcesChanged(),
      onBlocksChanged: (hashes) => this.engine?.blocksChanged(hashes),
      onChange: () => this.schedulePush(),
      buffers: blockBuffers,
    });
    this.server = this.peers.gateServer(new ServerBlockSource(deps.api, undefined, blockBuffers));
    this.uploads = new UploadQueue({
      ns,
      api: deps.api,
      blocks: deps.blocks,
      sha256,
      onChange: () => this.schedulePush(),
      onCommitted: (hashes) => void this.engine?.noteStoredBlocks(hashes),
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
      this.schedulePush();
    }, TICK_MS);
  }

  subscribe(listener: (view: WorkspaceView) => void): void {
    this.listeners.add(listener);
    listener(this.view());
  }

  async close(): Promise<void> {
    this.closed = true;
    this.lockAbort.abort();
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.pushTimer) clearTimeout(this.pushTimer);
    this.channel.close();
    this.listeners.clear();
    this.peers.close();
    await this.engine?.stop();
    this.engine = null;
    this.releaseLeadership?.();
  }

  private async refreshStorage(): Promise<void> {
    this.storage = await storageEstimate().catch(() => null);
    this.schedulePush();
  }

  list(query: FolderQuery): FolderListing {
    return this.tree.list(query);
  }

  upload(inputs: UploadInput[]): void {
    this.uploads.add(inputs);
  }

  /** A live file's record: from the running engine when this tab leads, else read from storage. */
  async fileRecord(path: FilePath): Promise<FileRecord | undefined> {
    return this.engine?.file(path) ?? (await this.deps.state.file(this.namespaceId, path));
  }

  async rename(from: string, to: string): Promise<void> {
    const source = parseFilePath(from, 'from');
    const target = parseFilePath(to, 'to');
    if (source === target) return;
    const file = await this.fileRecord(source);
    if (!file) throw new Error(`${source} is not in this workspace`);
    // Write the new name first: a crash between the two commits leaves a copy, never a loss.
    await commitWithBlocks(
      this.namespaceId,
      { path: target, size: file.size, mtime: file.mtime, blocks: file.blocks, deleted: false },
      this.deps.api,
      this.deps.blocks,
    );
    await this.remove(source);
  }

  async remove(path: string): Promise<void> {
    const target = parseFilePath(path);
    await commitWithBlocks(
      this.namespaceId,
      { path: target, size: 0, mtime: Date.now(), blocks: [], deleted: true },
      this.deps.api,
      this.deps.blocks,
    );
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
    const engine = new NamespaceSync({
      ns: this.namespaceId,
      journal: this.deps.api.journal(this.namespaceId),
      state: this.deps.state,
      blocks: this.deps.blocks,
      sha256,
      sources: () => [...this.peers.sources(), this.server],
      trackFileChanges: true,
      onChange: () => this.schedulePush(),
      onSynced: (cursor) => this.peers.advertise(cursor),
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
    this.shared = sharedViewOf(this.deps.record, engine, this.peers.views());
    this.channel.postMessage({ type: 'full', view: this.shared, files } satisfies TabMessage);
    // Announce on join: what this device already holds (cursor 0 when it holds nothing).
    this.peers.advertise(engine.syncedCursor);
    this.schedulePush();
    // Hold the lock until this session closes (or the tab goes away).
    await new Promise<void>((resolve) => (this.releaseLeadership = resolve));
  }

  private follow(): void {
    this.role = 'follower';
    this.channel.postMessage({ type: 'hello' } satisfies TabMessage);
    this.schedulePush();
  }

  private onTabMessage(message: TabMessage): void {
    if (message.type === 'hello' && this.role === 'leader' && this.engine) {
      this.channel.postMessage({ type: 'full', view: this.shared, files: this.tree.allFiles() } satisfies TabMessage);
    }
    if (this.role !== 'follower') return;
    if (message.type === 'full') {
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
    return fullView(this.shared, this.role, { list: this.uploads.list(), totals: this.uploads.summary() }, this.tree.version, this.storage);
  }

  /** At most one view per interval; the first change after a quiet spell goes out at once. */
  private schedulePush(): void {
    if (this.pushTimer || this.closed) return;
    const wait = Math.max(0, this.lastPushAt + VIEW_INTERVAL_MS - performance.now());
    this.pushTimer = setTimeout(() => {
      this.pushTimer = null;
      this.push();
    }, wait);
  }

  private push(): void {
    if (this.closed) return;
    this.lastPushAt = performance.now();
    if (this.role === 'leader' && this.engine) {
      const deltas = changedFileDeltas(this.engine);
      this.tree.apply(deltas);
      this.shared = sharedViewOf(this.deps.record, this.engine, this.peers.views());
      this.channel.postMessage({ type: 'view', view: this.shared, deltas } satisfies TabMessage);
    }
    const view = this.view();
    for (const listener of this.listeners) {
      Promise.resolve(listener(view)).catch(() => this.listeners.delete(listener));
    }
  }
}

