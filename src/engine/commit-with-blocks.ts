import type { BlockHash, CommitRequest, NamespaceId } from '../protocol/index.ts';
import { BATCHED_BLOCK_MAX, BlockBatchSender } from './block-batches.ts';
import type { LocalBlockStore, UploadApi } from './types.ts';

const COMMIT_ATTEMPTS = 4;
/** Blocks read from the local store at once while answering a 409 need list (each large one is an upload in flight). */
const NEED_UPLOADS_IN_FLIGHT = 4;

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
