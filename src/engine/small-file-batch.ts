import type { BlockHash, CommitRequest, FilePath, NamespaceId } from '../protocol/index.ts';
import { MAX_BLOCK_SIZE } from '../protocol/index.ts';
import { BlockBatchSender } from './block-batches.ts';
import { commitBatchWithBlocks } from './commit-with-blocks.ts';
import { commitBatchKeepingBoth, type ConditionalCommits } from './conflict-copies.ts';
import type { LocalBlockStore, Sha256, UploadApi } from './types.ts';

/** A file small enough to be one block (or none, when empty), uploaded with others. */
export interface SmallFile {
  path: FilePath;
  mtime: number;
  size: number;
  read(): Promise<Uint8Array>;
}

export interface SmallFileBatchOptions {
  ns: NamespaceId;
  api: UploadApi;
  blocks: LocalBlockStore;
  sha256: Sha256;
  /** Files read and hashed at once. */
  readParallel?: number;
  /** Batch block uploads in flight at once (POST /api/v1/blocks/batch). */
  batchesInFlight?: number;
  /** Single block uploads in flight at once, against a server without batch uploads. */
  putParallel?: number;
  /** One file was read, hashed and kept on this device. */
  onHashed?: (index: number, bytes: number) => void;
  /** One file's block is on the server (sent now, or it had it). */
  onUploaded?: (index: number, bytes: number) => void;
  /** One file could not be read (gone, changed, unreadable): it is left out, the rest go on. */
  onUnreadable?: (index: number, error: unknown) => void;
  /** Commit conditionally, keeping conflicted copies (see uploadFile); unconditional without it. */
  conditions?: ConditionalCommits;
  /** Another version held one file's path: this one was committed as a conflicted copy at `path`. */
  onConflictedCopy?: (index: number, path: FilePath) => void;
}

/** What a batch can hold: the commit API's limit, and a memory bound for the bytes in hand. */
export const SMALL_FILE_BATCH_FILES = 1000;
export const SMALL_FILE_BATCH_BYTES = 16 * 1024 * 1024;

/**
 * Uploads many small files with a few round trips instead of several per file: read and hash
 * them a few at a time (each kept locally), ask the server once which blocks it lacks, send
 * those in a few batch uploads, and commit every file in one batch commit (one transaction, consecutive sjids). A
 * file that cannot be read is left out (onUnreadable); a server failure fails the batch.
 * Returns each file's sjid, or null for a file left out.
 */
export async function uploadSmallFiles(files: readonly SmallFile[], options: SmallFileBatchOptions): Promise<(number | null)[]> {
  if (files.length === 0) return [];
  if (files.length > SMALL_FILE_BATCH_FILES) throw new Error(`a batch holds at most ${SMALL_FILE_BATCH_FILES} files`);
  const { api, blocks, sha256 } = options;
  const hashes: (BlockHash | null)[] = new Array(files.length).fill(null);
  const unreadable = new Set<number>();
  const bodies = new Map<BlockHash, { bytes: Uint8Array; indexes: number[] }>();

  await eachAtMost(options.readParallel ?? 8, files.length, async (index) => {
    const file = files[index];
    let bytes: Uint8Array;
    try {
      bytes = await file.read();
      if (bytes.length > MAX_BLOCK_SIZE) throw new Error(`${file.path} grew past one block while it was read`);
    } catch (error) {
      unreadable.add(index);
      options.onUnreadable?.(index, error);
      return;
    }
    if (bytes.length > 0) {
      const hash = await sha256(bytes);
      await blocks.putBlock(hash, bytes);
      hashes[index] = hash;
      const body = bodies.get(hash);
      if (body) body.indexes.push(index);
      else bodies.set(hash, { bytes, indexes: [index] });
    }
    options.onHashed?.(index, bytes.length);
  });

  const missing = new Set(bodies.size > 0 ? await api.missingBlocks([...bodies.keys()]) : []);
  for (const [hash, body] of bodies) {
    if (!missing.has(hash)) for (const index of body.indexes) options.onUploaded?.(index, body.bytes.length);
  }
  // The missing blocks go in a few batch requests (single PUTs against a server without them).
  const sender = new BlockBatchSender(api, {
    batchesInFlight: options.batchesInFlight ?? 2,
    putsInFlight: options.putParallel ?? 4,
    onSent: (hash) => {
      const body = bodies.get(hash)!;
      for (const index of body.indexes) options.onUploaded?.(index, body.bytes.length);
    },
  });
  for (const hash of missing) await sender.add({ hash, bytes: bodies.get(hash)!.bytes });
  await sender.finish();
  const included = files.map((_, index) => index).filter((index) => !unreadable.has(index));
  for (const index of included) if (hashes[index] === null) options.onUploaded?.(index, 0);
  if (included.length === 0) return files.map(() => null);

  const requests: CommitRequest[] = included.map((index) => {
    const hash = hashes[index];
    const file = files[index];
    return { path: file.path, size: hash ? bodies.get(hash)!.bytes.length : 0, mtime: file.mtime, blocks: hash ? [hash] : [], deleted: false };
  });
  const result: (number | null)[] = files.map(() => null);
  if (options.conditions) {
    const landed = await commitBatchKeepingBoth(options.ns, requests, api, blocks, options.conditions);
    included.forEach((index, i) => {
      result[index] = landed[i].sjid;
      if (landed[i].conflicted) options.onConflictedCopy?.(index, landed[i].path);
    });
  } else {
    const sjids = await commitBatchWithBlocks(options.ns, requests, api, blocks);
    included.forEach((index, i) => (result[index] = sjids[i]));
  }
  return result;
}

/** Runs work(0 … count-1) with at most `limit` at once; the first failure rejects. */
async function eachAtMost(limit: number, count: number, work: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < count; index = next++) await work(index);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}
