import type { NamespaceSync } from '../../src/engine/namespace-sync.ts';
import type { UploadApi } from '../../src/engine/types.ts';
import { folderPlatformOf, type NamespaceId } from '../../src/protocol/index.ts';
import type { FolderSyncView } from '../sync-api.ts';
import type { BlobBlockStore } from '../upload-queue.ts';
import { sha256 } from '../web-crypto.ts';
import { FolderSync } from './folder-sync.ts';
import { FolderSyncStore } from './folder-sync-store.ts';

/** What a folder link needs of the workspace it belongs to. */
export interface LinkedWorkspace {
  api: UploadApi;
  blocks: BlobBlockStore;
  device: string;
  engine: () => NamespaceSync | null;
}

/**
 * The sync worker's folder links: which workspace syncs with which folder (kept in IndexedDB,
 * so a reload finds it again), and the running FolderSync of each workspace open in this tab.
 */
export class FolderLinks {
  private store: Promise<FolderSyncStore> | null = null;
  private readonly running = new Map<NamespaceId, Promise<FolderSync>>();

  private open(): Promise<FolderSyncStore> {
    this.store ??= FolderSyncStore.open();
    this.store.catch(() => (this.store = null));
    return this.store;
  }

  async linked(ns: NamespaceId): Promise<FileSystemDirectoryHandle | null> {
    return (await (await this.open()).link(ns))?.handle ?? null;
  }

  async link(ns: NamespaceId, folder: FileSystemDirectoryHandle, workspace: LinkedWorkspace): Promise<void> {
    if (!(folder instanceof FileSystemDirectoryHandle)) throw new Error('folder sync needs a folder (a FileSystemDirectoryHandle)');
    await requireReadWrite(folder);
    const store = await this.open();
    const previous = await store.link(ns);
    await this.stop(ns);
    // Another folder than before: what was known of the old one does not apply.
    if (!previous || !(await previous.handle.isSameEntry(folder))) await store.setLink({ ns, handle: folder, linkedAt: Date.now() });
    await this.resume(ns, workspace);
  }

  async resume(ns: NamespaceId, workspace: LinkedWorkspace): Promise<void> {
    if (this.running.has(ns)) return;
    const store = await this.open();
    const link = await store.link(ns);
    if (!link) throw new Error('this workspace is not linked to a folder on this device');
    await requireReadWrite(link.handle);
    const { api, blocks } = workspace;
    const starting = FolderSync.start({
      ns,
      root: link.handle,
      store,
      // Block bodies are the stored blocks' disk-backed Files, as the upload queue sends them: a
      // Blob made from the bytes would sit in the browser process until the worker collects it.
      api: {
        missingBlocks: (hashes) => api.missingBlocks(hashes),
        commit: (id, request) => api.commit(id, request),
        commitBatch: (id, requests) => api.commitBatch(id, requests),
        putBlock: async (hash, body) => api.putBlock(hash, (await blocks.getBlob(hash)) ?? body),
        ...(api.putBlocks ? { putBlocks: (batch) => api.putBlocks!(batch) } : {}),
      },
      blocks: workspace.blocks,
      sha256,
      device: workspace.device,
      platform: folderPlatformOf(navigator.userAgent),
      engine: workspace.engine,
    });
    this.running.set(ns, starting);
    starting.catch(() => this.running.delete(ns));
    await starting;
  }

  async unlink(ns: NamespaceId): Promise<void> {
    await this.stop(ns);
    await (await this.open()).unlink(ns);
  }

  async stop(ns: NamespaceId): Promise<void> {
    const sync = this.running.get(ns);
    this.running.delete(ns);
    await (await sync?.catch(() => null))?.stop();
  }

  async status(ns: NamespaceId): Promise<FolderSyncView | null> {
    const sync = await this.running.get(ns)?.catch(() => null);
    return sync?.status() ?? null;
  }

  async scan(ns: NamespaceId): Promise<FolderSyncView | null> {
    const sync = await this.running.get(ns)?.catch(() => null);
    if (!sync) return null;
    sync.scanSoon();
    return sync.status();
  }
}

/** Folder sync writes: without read-write permission it would fail on every file. */
async function requireReadWrite(folder: FileSystemDirectoryHandle): Promise<void> {
  const state = await folder.queryPermission({ mode: 'readwrite' });
  if (state !== 'granted') throw new Error(`this browser has no permission to change the folder ${folder.name} (allow it on the page first)`);
}
