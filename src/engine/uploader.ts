import type { BlockHash, CommitRequest, FilePath, NamespaceId } from '../protocol/index.ts';
import { cutBlocks } from './chunker.ts';
import { commitWithBlocks } from './commit-with-blocks.ts';
import { MissingBlockQuestions } from './missing-block-questions.ts';
import { ApiError } from './server-api.ts';
import { commitKeepingBoth, type ConditionalCommits } from './conflict-copies.ts';
import { withSourceBlocks, type SourceSlice } from './keep-from-source.ts';
import { sendForServerToName } from './server-named-blocks.ts';
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
  /** Blocks read and hashed ahead of the one being handed on (default 3). */
  hashesAhead?: number;
  /**
   * The source's bytes `offset … offset + length` as a Blob that reads them from where they
   * are (a slice of the picked File): sent as the block's body, so the upload need not wait
   * for the local copy to be written. Without it the block's bytes are sent once kept.
   */
  bodyOf?: (offset: number, length: number) => Blob;
  /**
   * Commit conditionally (`parent` = the live entry this device knows), keeping this version
   * as a conflicted copy when another took the path first. Without it the commit is
   * unconditional (as before conditional commits).
   */
  conditions?: ConditionalCommits;
  /**
   * With `bodyOf`: the caller keeps the local copies after the upload, from the source
   * (`keepFromSource`, with the returned `slices`); the upload neither writes them nor waits
   * for them. Called with the file's blocks just before the commit, so the caller can tell
   * the engine not to fetch what it is about to store. A 409 need list is answered from the
   * source (checked against the hashes). *Why:* the local write was most of the sync
   * worker's time in an upload, and the server holding the blocks and the commit is what
   * makes the file safe.
   */
  keepLater?: (hashes: readonly BlockHash[]) => void;
  /**
   * The file's size, to send its blocks unread (slices from `bodyOf`) for the server to name
   * (`api.putUnnamedBlock`, server-named-blocks.ts): the file is read once, by the upload
   * itself, and nothing is asked first, so nothing is deduplicated. Needs `keepLater`, whose
   * keeping from the source checks every name. Where the server cannot name blocks, the
   * upload reads and hashes `stream` as without it.
   */
  unreadSize?: number;
  /**
   * The upload is done with `block`, one of the blocks `stream` gave (sent, kept, or given up):
   * its buffer may be read into again (blobBlocks' pool).
   */
  doneWith?: (block: Uint8Array) => void;
}

/**
 * Uploads one file as it is read: each 4 MiB block is hashed, kept locally (so this device
 * never downloads its own upload; with `keepLater` by the caller after the commit), sent to
 * the server unless it already has it, and the file is committed once every block is there.
 * At most `parallel` blocks are sent at once; with `bodyOf` twice as many are in hand (kept,
 * asked about, waiting to be sent), so the link stays busy while questions are answered.
 * Memory stays at about that many blocks + 2.
 */
export async function uploadFile(
  options: UploadFileOptions,
): Promise<{ sjid: number; blocks: BlockHash[]; size: number; path: FilePath; conflicted: boolean; slices: SourceSlice[] }> {
  const { api, sha256 } = options;
  const source = options.bodyOf;
  if (options.keepLater && !source) throw new Error('keepLater needs bodyOf: the blocks are kept from the source');
  const slices: SourceSlice[] = [];
  const store =
    options.keepLater && source
      ? withSourceBlocks(options.blocks, slices, async (offset, length) => new Uint8Array(await source(offset, length).arrayBuffer()), sha256)
      : options.blocks;
  const parallel = options.parallel ?? 4;
  const progress: UploadProgress = { bytesHashed: 0, bytesUploaded: 0, phase: 'hashing' };
  const report = () => options.onProgress?.({ ...progress });
  const hashes: BlockHash[] = [];
  const inFlight = new Set<Promise<void>>();
  const inHand = options.bodyOf ? parallel * 2 : parallel;
  const sending = new Slots(parallel);
  const questions = new MissingBlockQuestions((asked) => api.missingBlocks(asked));
  let failure: unknown = null;

  const keepAndSend = async (hash: BlockHash, bytes: Uint8Array, offset: number) => {
    // Kept later from the source (keepLater), or now: the write overlaps the question and the PUT.
    const kept = options.keepLater ? Promise.resolve() : store.putBlock(hash, bytes);
    try {
      await sendKept(hash, bytes, offset, kept);
    } finally {
      // Settled either way before the block's buffer may be read into again (doneWith).
      await kept.catch(() => {});
    }
  };

  const sendKept = async (hash: BlockHash, bytes: Uint8Array, offset: number, kept: Promise<void>) => {
    const { bodyOf } = options;
    // Without a body of its own, kept first: an adapter may send the stored copy.
    if (!bodyOf) await kept;
    // The local write, the question and the upload overlap (measured in Chromium 156 on a
    // loaded 2-core machine: a 4 MiB block took about 300 ms to write while four were
    // written, the question 30–300 ms, so a block in turn kept the link idle).
    if (await questions.lacks(hash)) {
      await sending.take();
      try {
        if (!bodyOf) await api.putBlock(hash, bytes);
        else {
          await api.putBlock(hash, bodyOf(offset, bytes.length)).catch(async (error: unknown) => {
            // The source changed since it was read: send what was read and hashed (the kept copy,
            // or with keepLater the bytes in hand).
            if (!(error instanceof ApiError && error.code === 'hash_mismatch')) throw error;
            await kept;
            await api.putBlock(hash, bytes);
          });
        }
      } finally {
        sending.give();
      }
    }
    await kept;
    progress.bytesUploaded += bytes.length;
    report();
  };

  let size = 0;
  const named =
    options.unreadSize !== undefined && source && options.keepLater && api.putUnnamedBlock
      ? await sendForServerToName(options.unreadSize, source, (body) => api.putUnnamedBlock!(body), parallel, (length) => {
          progress.bytesHashed += length;
          progress.bytesUploaded += length;
          progress.phase = 'uploading';
          report();
        })
      : null;
  if (named) {
    for (const slice of named) {
      hashes.push(slice.hash);
      slices.push(slice);
      size += slice.length;
    }
  } else {
    // Blocks named before a refusal count again when sent by name (the server finds them held).
    progress.bytesHashed = 0;
    progress.bytesUploaded = 0;
    progress.phase = 'hashing';
    await readHashAndSend();
  }

  progress.phase = 'committing';
  report();
  options.keepLater?.(hashes);
  const request: CommitRequest = { path: options.path, size, mtime: options.mtime, blocks: hashes, deleted: false };
  const landed = options.conditions
    ? await commitKeepingBoth(options.ns, request, api, store, options.conditions)
    : { sjid: await commitWithBlocks(options.ns, request, api, store), path: options.path, conflicted: false };
  progress.phase = 'done';
  report();
  return { ...landed, blocks: hashes, size, slices };

  async function readHashAndSend(): Promise<void> {
    const reader = cutBlocks(options.stream);
    // Blocks are read and hashed a few ahead of the one being handed on: one at a time, each
    // block's read and hash (50–90 ms and 20–50 ms per 4 MiB in Chromium 156 on 2 loaded cores)
    // set the pace of the whole upload while the PUTs waited.
    let readOffset = 0;
    const readAndHash = (): Promise<{ block: Uint8Array; offset: number; hash: BlockHash } | null> =>
      reader.next().then(async ({ done, value: block }) => {
        if (done) return null;
        // Reads settle in order, so offsets are handed out in order.
        const offset = readOffset;
        readOffset += block.length;
        return { block, offset, hash: await sha256(block) };
      });
    const ahead = Array.from({ length: options.hashesAhead ?? HASHES_AHEAD }, readAndHash);
    // What is read ahead after a failure is dropped: its errors are not the upload's.
    const dropAhead = () => ahead.forEach((pending) => void pending.catch(() => {}));
    for (;;) {
      let next: Awaited<ReturnType<typeof readAndHash>>;
      try {
        next = await ahead.shift()!;
      } catch (error) {
        dropAhead();
        throw error;
      }
      if (!next || failure) break;
      ahead.push(readAndHash());
      const { block, offset, hash } = next;
      hashes.push(hash);
      slices.push({ hash, offset, length: block.length });
      size += block.length;
      progress.bytesHashed += block.length;
      progress.phase = 'uploading';
      report();
      // Keeping the block locally and sending it overlap with reading the next ones.
      const task: Promise<void> = keepAndSend(hash, block, offset)
        .catch((error: unknown) => {
          failure ??= error;
        })
        .finally(() => {
          inFlight.delete(task);
          options.doneWith?.(block);
        });
      inFlight.add(task);
      if (inFlight.size >= inHand) await Promise.race(inFlight);
    }
    dropAhead();
    await reader.return(undefined);
    await Promise.all(inFlight);
    if (failure) throw failure;
  }
}

const HASHES_AHEAD = 3;

/** At most `size` holders at once; the rest wait in turn. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(size: number) {
    this.free = size;
  }
  async take(): Promise<void> {
    if (this.free > 0) {
      this.free -= 1;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free += 1;
  }
}

// They moved to commit-with-blocks.ts (so conflict-copies.ts uses them without an import cycle); callers still import them from here.
export { commitBatchWithBlocks, commitWithBlocks } from './commit-with-blocks.ts';
