import type { FileRecord } from '../src/engine/types.ts';
import { zipArchive, type ZipEntry, type ZipKnownPiece } from '../src/engine/zip/zip-writer.ts';
import { coalesce, gatherIntoWrites } from '../src/engine/zip/coalesce.ts';
import type { BlockHash } from '../src/protocol/index.ts';
import type { FileView, ZipProgressView } from './sync-api.ts';
import type { BlockCrc } from './block-crcs.ts';
import { crc32 } from '../src/engine/zip/crc32.ts';
import { INLINE_BLOCK_MAX } from './inline-blocks.ts';

/**
 * A folder of a workspace (or all of it) as a streamed .zip: the files below it from the
 * folder tree, in the order the folder view lists them, each read block by block from this
 * device's store and passed through the zip writer. The stream is pulled: nothing is read
 * before the consumer (a file being written, a download) asks for more, so memory stays at a
 * block or two whatever the archive's size. Entry CRCs come from the blocks' (ZipBlockStore.piece),
 * so a block with a CRC on record is never read on this thread.
 */

/** What a zip needs of the workspace. */
export interface ZipSource {
  /** Files below the folder, in archive order (walked lazily). */
  files: Iterable<FileView>;
  /** The folder's totals, for progress. */
  totals: { files: number; bytes: number };
  /** Path of the zipped folder ('' for the whole workspace): entry names are relative to it. */
  folder: string;
  /** The live record of a path (its blocks), or undefined when it went away meanwhile. */
  record(path: string): FileRecord | undefined | Promise<FileRecord | undefined>;
  blocks: ZipBlockStore;
  /**
   * Fetches these blocks of `record` ahead of the background sync (peers, then the server):
   * the session's priority fetch. Without it, or when it fails, the zip waits for the sync.
   */
  fetchNow?(record: FileRecord, hashes: readonly BlockHash[], signal: AbortSignal): Promise<void>;
}

export interface ZipBlockStore {
  hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>>;
  /** The CRC records there are for these blocks (one look-up for a file's blocks). */
  blockCrcs(hashes: readonly BlockHash[]): Promise<Map<BlockHash, BlockCrc>>;
  /**
   * The stored block as a piece of the archive with its CRC-32 (`known`, when it fits the
   * block, else computed): its File where it is a file on disk and `output` is `blobs`, else
   * its bytes. Null when it is not stored.
   */
  piece(hash: BlockHash, output: ZipOutput, known: BlockCrc | undefined): Promise<ZipKnownPiece | null>;
  /**
   * Small blocks (those kept in IndexedDB packs), many at once, each pack read once: what is
   * not found there is left out, and read by `piece` as any block.
   */
  smallBlocks?(hashes: readonly BlockHash[]): Promise<Map<BlockHash, Uint8Array>>;
}

/**
 * What the stream carries: `bytes` only (for any consumer), or `blobs` where a block is a
 * file on disk (for a FileSystemWritableFileStream, which copies a File inside the browser
 * process: 60–98 MB/s where the same blocks written as bytes went at 21–45 MB/s, measured in
 * Chromium 156 on a loaded 2-core machine).
 */
export type ZipOutput = 'bytes' | 'blobs';

/** Small zip records gathered into writes of about this size (a write is a round trip to the browser process). */
const WRITE_BYTES = 1024 * 1024;
/**
 * In `blobs` mode, the pieces of about this much archive go out as one Blob (one write): block
 * Files are references, so this costs no memory, and fewer writes mean fewer round trips (with
 * 16 MiB writes the 2 GiB zip ran at 0.89–1.45 of the bare sink at four Files per write; with
 * 64 MiB at the bare sink's best, every File in one write; docs/architecture.md).
 */
const BLOB_WRITE_BYTES = 64 * 1024 * 1024;
/** Small files' content goes out as bytes, this much a write at most (see gatherIntoWrites). */
const BYTES_WRITE_MAX = 8 * 1024 * 1024;
const PROGRESS_EVERY_MS = 250;
/**
 * Files are taken a window at a time (their records looked up, small files' blocks read pack by
 * pack with `smallBlocks`): up to this many files, or this much small files' content.
 */
const WINDOW_FILES = 10_000;
const WINDOW_SMALL_BYTES = 16 * 1024 * 1024;
const WAIT_POLL_MS = 500;

/**
 * Resolves once every block of a file is stored on this device. Missing blocks are asked for
 * first (`fetchNow`, the session's priority fetch), so a zip of a half-synced workspace does not
 * wait its turn behind the background sync; if that fails (the server refused a block, storage
 * is full), the zip waits for the background sync, which retries on its own schedule.
 */
export async function blocksForZip(
  blocks: ZipBlockStore,
  hashes: readonly BlockHash[],
  signal: AbortSignal,
  onWait: () => void,
  fetchNow?: (missing: readonly BlockHash[], signal: AbortSignal) => Promise<void>,
): Promise<void> {
  const wanted = new Set(hashes);
  let asked = false;
  for (;;) {
    signal.throwIfAborted();
    const stored = await blocks.hasBlocks([...wanted]);
    if (stored.size >= wanted.size) return;
    onWait();
    if (fetchNow && !asked) {
      asked = true;
      const missing = [...wanted].filter((hash) => !stored.has(hash));
      try {
        await fetchNow(missing, signal);
        continue;
      } catch {
        signal.throwIfAborted();
        // Not fetched now: the background sync still brings them; wait for it below.
      }
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, WAIT_POLL_MS);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** How a zip stream is run: where progress goes, what stops it, who hears that it ended. */
export interface ZipStreamOptions {
  signal: AbortSignal;
  onProgress(progress: ZipProgressView): void;
  /** Once, when the stream is complete, fails (with what failed) or is cancelled. */
  onEnd(error?: unknown): void;
  output: ZipOutput;
}

/**
 * The archive as a stream; `onProgress` hears at most four times a second, and once at the
 * end. Aborting `signal` (or cancelling the stream) stops it between chunks.
 */
export function zipStream(source: ZipSource, options: ZipStreamOptions): ReadableStream<Uint8Array | Blob> {
  const { signal, onProgress, output } = options;
  let ended = false;
  const end = (error?: unknown) => {
    if (ended) return;
    ended = true;
    options.onEnd(error);
  };
  // A stream never pulled (its download never started) ends when the job is cancelled, too.
  signal.addEventListener('abort', () => end(signal.reason), { once: true });
  const progress: ZipProgressView = { files: source.totals.files, bytes: source.totals.bytes, filesDone: 0, bytesDone: 0, waitingFor: null, done: false };
  let reportedAt = 0;
  const report = (force = false) => {
    const now = performance.now();
    if (!force && now - reportedAt < PROGRESS_EVERY_MS) return;
    reportedAt = now;
    onProgress({ ...progress });
  };
  const archive = zipArchive(entries(source, signal, progress, report, output), () => {
    progress.filesDone += 1;
    report();
  });
  const chunks = (output === 'blobs' ? gatherIntoWrites(archive, BLOB_WRITE_BYTES, BYTES_WRITE_MAX) : coalesce(archive, WRITE_BYTES))[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array | Blob>(
    {
      async pull(controller) {
        try {
          signal.throwIfAborted();
          const next = await chunks.next();
          if (next.done) {
            progress.done = true;
            progress.waitingFor = null;
            report(true);
            controller.close();
            end();
          } else {
            controller.enqueue(next.value);
          }
        } catch (error) {
          end(error);
          throw error;
        }
      },
      async cancel() {
        end();
        await chunks.return(undefined);
      },
    },
    // One chunk ahead: the next is read while the consumer writes the last.
    new CountQueuingStrategy({ highWaterMark: 1 }),
  );
}

async function* entries(source: ZipSource, signal: AbortSignal, progress: ZipProgressView, report: (force?: boolean) => void, output: ZipOutput): AsyncGenerator<ZipEntry> {
  const prefix = source.folder ? `${source.folder}/` : '';
  const files = source.files[Symbol.iterator]();
  for (;;) {
    // The next window of files: a file deleted after this look-up is zipped as it was a moment before.
    const window: FileRecord[] = [];
    let smallBytes = 0;
    while (window.length < WINDOW_FILES && smallBytes < WINDOW_SMALL_BYTES) {
      signal.throwIfAborted();
      const next = files.next();
      if (next.done) break;
      const record = await source.record(next.value.path);
      // Deleted since the walk began: not in the archive (as if zipped a moment later).
      if (!record || !record.path.startsWith(prefix)) continue;
      window.push(record);
      if (isSmall(record)) smallBytes += record.size;
    }
    if (window.length === 0) return;
    const smallOnes = window.filter(isSmall).map((record) => record.blocks[0]);
    const small = smallOnes.length > 0 && source.blocks.smallBlocks ? await source.blocks.smallBlocks(smallOnes) : new Map<BlockHash, Uint8Array>();
    for (const record of window) {
      signal.throwIfAborted();
      yield {
        name: record.path.slice(prefix.length),
        size: record.size,
        mtime: record.mtime,
        data: () => fileBytes(source, record, signal, progress, report, output, small),
      };
    }
  }
}

/** A file of one block small enough to be kept in an IndexedDB pack. */
function isSmall(record: FileRecord): boolean {
  return record.blocks.length === 1 && record.size > 0 && record.size <= INLINE_BLOCK_MAX;
}

/** A file's bytes block by block, the next block read while the last is written. */
async function* fileBytes(
  source: ZipSource,
  record: FileRecord,
  signal: AbortSignal,
  progress: ZipProgressView,
  report: (force?: boolean) => void,
  output: ZipOutput,
  small: Map<BlockHash, Uint8Array>,
): AsyncGenerator<ZipKnownPiece> {
  if (record.blocks.length === 0) return;
  // Read ahead with its window's pack reads (entries): checksummed here, as `piece` would.
  const ahead = record.blocks.length === 1 ? small.get(record.blocks[0]) : undefined;
  if (ahead && ahead.length === record.size) {
    signal.throwIfAborted();
    progress.bytesDone += ahead.length;
    yield { data: ahead, crc32: crc32(ahead) };
    return;
  }
  const { blocks, fetchNow } = source;
  const onWait = () => {
    if (progress.waitingFor !== record.path) {
      progress.waitingFor = record.path;
      report(true);
    }
  };
  await blocksForZip(blocks, record.blocks, signal, onWait, fetchNow && ((missing, aborted) => fetchNow(record, missing, aborted)));
  if (progress.waitingFor !== null) {
    progress.waitingFor = null;
    report(true);
  }
  const gone = (hash: BlockHash) => new Error(`${record.path}: block ${hash.slice(0, 12)}… is no longer stored on this device`);
  const crcs = await blocks.blockCrcs(record.blocks);
  const read = async (hash: BlockHash): Promise<ZipKnownPiece> => {
    const piece = await blocks.piece(hash, output, crcs.get(hash));
    if (!piece) throw gone(hash);
    // A block the file repeats is read once for its CRC, then found on record.
    if (!crcs.has(hash)) crcs.set(hash, { crc32: piece.crc32, size: pieceSize(piece) });
    return piece;
  };
  let next = read(record.blocks[0]);
  // A read ahead that fails after the archive stopped (cancelled) has no one left to tell.
  next.catch(() => undefined);
  for (let i = 0; i < record.blocks.length; i++) {
    const piece = await next;
    if (i + 1 < record.blocks.length) {
      next = read(record.blocks[i + 1]);
      next.catch(() => undefined);
    }
    signal.throwIfAborted();
    progress.bytesDone += pieceSize(piece);
    yield piece;
  }
}

function pieceSize(piece: ZipKnownPiece): number {
  return piece.data instanceof Uint8Array ? piece.data.length : piece.data.size;
}
