import { uploadFile } from '../src/engine/uploader.ts';
import type { LocalBlockStore, Sha256, UploadApi } from '../src/engine/types.ts';
import { describeError, parseFilePath, type BlockHash, type NamespaceId } from '../src/protocol/index.ts';
import type { UploadInput, UploadView } from './sync-api.ts';

/** The device's block store, which can also hand out a stored block as a disk-backed Blob. */
export interface BlobBlockStore extends LocalBlockStore {
  getBlob(hash: BlockHash): Promise<Blob | undefined>;
}

export interface UploadQueueOptions {
  ns: NamespaceId;
  api: UploadApi;
  blocks: BlobBlockStore;
  sha256: Sha256;
  onChange: () => void;
  /** An upload committed; its blocks are stored on this device. */
  onCommitted: (hashes: BlockHash[]) => void;
  /** Files uploading at once; each also pipelines its own blocks. */
  parallelFiles?: number;
}

const KEEP_FINISHED = 200;

/** The uploads of one workspace in this tab, run a few at a time, with their progress. */
export class UploadQueue {
  private views: UploadView[] = [];
  private waiting: Array<{ view: UploadView; file: File }> = [];
  private running = 0;
  private nextId = 1;

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
      putBlock: async (hash, body) => api.putBlock(hash, (await blocks.getBlob(hash)) ?? body),
    };
  }

  list(): UploadView[] {
    return this.views.map((view) => ({ ...view }));
  }

  add(inputs: UploadInput[]): void {
    for (const { file, path } of inputs) {
      const view: UploadView = { id: this.nextId++, path, size: file.size, bytesHashed: 0, bytesUploaded: 0, state: 'queued' };
      this.views.push(view);
      try {
        parseFilePath(path);
        this.waiting.push({ view, file });
      } catch (error) {
        view.state = 'failed';
        view.error = describeError(error);
      }
    }
    this.prune();
    this.options.onChange();
    this.drain();
  }

  private drain(): void {
    const parallel = this.options.parallelFiles ?? 2;
    while (this.running < parallel && this.waiting.length > 0) {
      const next = this.waiting.shift()!;
      this.running += 1;
      void this.run(next.view, next.file).finally(() => {
        this.running -= 1;
        this.drain();
      });
    }
  }

  private async run(view: UploadView, file: File): Promise<void> {
    view.state = 'hashing';
    this.options.onChange();
    try {
      const result = await uploadFile({
        ns: this.options.ns,
        path: parseFilePath(view.path),
        mtime: Math.max(0, Math.floor(file.lastModified)),
        stream: file.stream(),
        api: this.sendingStoredCopies,
        blocks: this.options.blocks,
        sha256: this.options.sha256,
        onProgress: (progress) => {
          view.bytesHashed = progress.bytesHashed;
          view.bytesUploaded = progress.bytesUploaded;
          view.state = progress.phase;
          this.options.onChange();
        },
      });
      view.size = result.size;
      view.state = 'done';
      this.options.onCommitted(result.blocks);
    } catch (error) {
      view.state = 'failed';
      view.error = describeError(error);
    }
    this.options.onChange();
  }

  private prune(): void {
    const finished = this.views.filter((view) => view.state === 'done' || view.state === 'failed');
    const excess = finished.length - KEEP_FINISHED;
    if (excess <= 0) return;
    const drop = new Set(finished.slice(0, excess));
    this.views = this.views.filter((view) => !drop.has(view));
  }
}
