import type { BlockHash, CommitRequest, FilePath, NamespaceId } from '../protocol/index.ts';
import { BATCHED_BLOCK_MAX, BlockBatchSender } from './block-batches.ts';
import { cutBlocks } from './chunker.ts';
import type { LocalBlockStore, Sha256, UploadApi } from './types.ts';

export interface UploadProgress {
  bytesHashed: number;
  bytesUploaded: number;
  phase: 'hashing' | 'uploading' | 'committing' | 'done';
}

export interface UploadFileOptions {
  ns: NamespaceId;
  path: FilePath;
  mtime: number;
  stream: ReadableStream<Uint8Array>;
  api: UploadApi;
  blocks: LocalBlockStore;
  sha256: Sha256;
  onProgress?: (progress: UploadProgress) => void;
  /** Block uploads in flight while the next blocks are read and hashed. */
  parallel?: number;
}

const COMMIT_ATTEMPTS = 4;
/** Blocks read from the local store at once while answering a 409 need list (each large one is an upload in flight). */
const NEED_UPLOADS_IN_FLIGHT = 4;

/**
 * Uploads one file as it is read: each 4 MiB block is hashed, kept locally (so this device
 * never downloads its own upload), sent to the server unless it already has it, and the
 * file is committed once every block is there. Memory stays at about `parallel + 2` blocks.
 */
export async function uploadFile(options: UploadFileOptions): Promise<{ sjid: number; blocks: BlockHash[]; size: number }> {
  const { api, blocks: store, sha256 } = options;
  const parallel = options.parallel ?? 4;
  const progress: UploadProgress = { bytesHashed: 0, bytesUploaded: 0, phase: 'hashing' };
  const report = () => options.onProgress?.({ ...progress });
  const hashes: BlockHash[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: unknown = null;

  const keepAndSend = async (hash: BlockHash, bytes: Uint8Array) => {
    // Kept first, then sent: an adapter may send the stored copy rather than the bytes.
    await store.putBlock(hash, bytes);
    const missing = await api.missingBlocks([hash]);
    if (missing.length > 0) await api.putBlock(hash, bytes);
    progress.bytesUploaded += bytes.length;
    report();
  };

  let size = 0;
  const reader = cutBlocks(options.stream);
  // Read one block ahead, so reading the file overlaps hashing and uploading.
  let ahead = reader.next();
  for (;;) {
    const { done, value: block } = await ahead;
    if (done || failure) break;
    ahead = reader.next();
    const hash = await sha256(block);
    hashes.push(hash);
    size += block.length;
    progress.bytesHashed += block.length;
    progress.phase = 'uploading';
    report();
    // Keeping the block locally and sending it overlap with reading the next one.
    const task: Promise<void> = keepAndSend(hash, block)
      .catch((error: unknown) => {
        failure ??= error;
      })
      .finally(() => inFlight.delete(task));
    inFlight.add(task);
    if (inFlight.size >= parallel) await Promise.race(inFlight);
  }
  await reader.return(undefined);
  await Promise.all(inFlight);
  if (failure) throw failure;

  progress.phase = 'committing';
  report();
  const request: CommitRequest = { path: options.path, size, mtime: options.mtime, blocks: hashes, deleted: false };
  const sjid = await commitWithBlocks(options.ns, request, api, store);
  progress.phase = 'done';
  report();
  return { sjid, blocks: hashes, size };
}

/**
 * Commits, and on a 409 uploads the blocks the server says it lacks (from the local
 * store) and tries again: blocks can vanish between check and commit (server restore,
 * garbage collection), and a rename may reference blocks the server never had.
 */
export async function commitWithBlocks(
  ns: NamespaceId,
  request: CommitRequest,
  api: UploadApi,
  store: LocalBlockStore,
): Promise<number> {
  return retryWithBlocks(() => api.commit(ns, request), api, store).then((result) => result.sjid);
}

/**
 * commitWithBlocks for 1 … MAX_COMMIT_BATCH commits in one transaction: a 409 names the
 * missing blocks of every file at once, so a batch costs one commit round trip plus one
 * per block the server lacks. Returns the sjids in request order.
 */
export async function commitBatchWithBlocks(
  ns: NamespaceId,
  requests: readonly CommitRequest[],
  api: UploadApi,
  store: LocalBlockStore,
): Promise<number[]> {
  return retryWithBlocks(() => api.commitBatch(ns, requests), api, store).then((result) => result.sjids);
}

/** Runs `commit` until it succeeds, uploading from the local store what each 409 names in between. */
async function retryWithBlocks<T extends object>(
  commit: () => Promise<T | { need: BlockHash[] }>,
  api: UploadApi,
  store: LocalBlockStore,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const result = await commit();
    if (!('need' in result)) return result;
    if (attempt >= COMMIT_ATTEMPTS) throw new Error(`server still lacks ${result.need.length} block(s) after ${attempt} attempts`);
    // A batch may name thousands of blocks: several read at once, the small ones sent in batch
    // uploads (a few requests rather than one each), the large ones one request each.
    const queue = [...result.need];
    const batches = new BlockBatchSender(api);
    const upload = async () => {
      for (let hash = queue.shift(); hash !== undefined; hash = queue.shift()) {
        const bytes = await store.getBlock(hash);
        if (!bytes) throw new Error(`block ${hash.slice(0, 12)}… is needed by the server but not stored on this device`);
        if (bytes.length <= BATCHED_BLOCK_MAX) await batches.add({ hash, bytes });
        else await api.putBlock(hash, bytes);
      }
    };
    await Promise.all(Array.from({ length: Math.min(NEED_UPLOADS_IN_FLIGHT, queue.length) }, upload));
    await batches.finish();
  }
}
