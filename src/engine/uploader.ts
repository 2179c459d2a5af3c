import type { BlockHash, CommitRequest, FilePath, NamespaceId } from '../protocol/index.ts';
import { cutBlocks } from './chunker.ts';
import { commitWithBlocks } from './commit-with-blocks.ts';
import { commitKeepingBoth, type ConditionalCommits } from './conflict-copies.ts';
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
  /**
   * Commit conditionally (`parent` = the live entry this device knows), keeping this version
   * as a conflicted copy when another took the path first. Without it the commit is
   * unconditional (as before conditional commits).
   */
  conditions?: ConditionalCommits;
}

/**
 * Uploads one file as it is read: each 4 MiB block is hashed, kept locally (so this device
 * never downloads its own upload), sent to the server unless it already has it, and the
 * file is committed once every block is there. Memory stays at about `parallel + 2` blocks.
 */
export async function uploadFile(
  options: UploadFileOptions,
): Promise<{ sjid: number; blocks: BlockHash[]; size: number; path: FilePath; conflicted: boolean }> {
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
  const landed = options.conditions
    ? await commitKeepingBoth(options.ns, request, api, store, options.conditions)
    : { sjid: await commitWithBlocks(options.ns, request, api, store), path: options.path, conflicted: false };
  progress.phase = 'done';
  report();
  return { ...landed, blocks: hashes, size };
}

// They moved to commit-with-blocks.ts (so conflict-copies.ts uses them without an import cycle); callers still import them from here.
export { commitBatchWithBlocks, commitWithBlocks } from './commit-with-blocks.ts';
