import { concatBytes } from './bytes.ts';

/**
 * Gathers small chunks into pieces of at least `minBytes` (large chunks and Blobs pass
 * through as they are, after what was gathered). A zip of many small files is a header, a few bytes and a
 * descriptor per file; writing each as its own chunk to a file stream costs a round trip to
 * the browser process every time (100,000 files would be 300,000 writes).
 */
export async function* coalesce<Chunk extends Uint8Array | Blob>(chunks: AsyncIterable<Chunk>, minBytes: number): AsyncGenerator<Chunk | Uint8Array> {
  let pending = new Uint8Array(minBytes);
  let used = 0;
  for await (const chunk of chunks) {
    if (!(chunk instanceof Uint8Array) || chunk.length >= minBytes) {
      if (used > 0) {
        yield pending.subarray(0, used);
        pending = new Uint8Array(minBytes);
        used = 0;
      }
      yield chunk;
      continue;
    }
    if (used + chunk.length > minBytes) {
      yield pending.subarray(0, used);
      pending = new Uint8Array(minBytes);
      used = 0;
    }
    pending.set(chunk, used);
    used += chunk.length;
  }
  if (used > 0) yield pending.subarray(0, used);
}

/**
 * Gathers the archive's chunks (bytes and Blobs) into writes for a file stream. Blobs (block
 * Files, disk-backed references) go out composed into one Blob of at least `minBytes`, with the
 * small bytes between them (headers, descriptors): a Blob of Files is copied inside the browser,
 * and fewer writes mean fewer round trips (Chromium 156, 4 MiB block Files into a
 * FileSystemWritableFileStream, 2 cores: one per write costs the browser process the most CPU
 * per byte; from four per write on, the size barely matters; docs/architecture.md).
 *
 * Runs of bytes (small files' content) go out as bytes, at most `maxHeldBytes` a write, never
 * wrapped in a Blob: a Blob's bytes stay in Chromium's blob system until its JS object is
 * collected, which V8 does not hurry for a small object whatever it holds, while an
 * ArrayBuffer's memory is counted by V8 and the file stream's own copy of written bytes is
 * released when the write is done. So a large write of block Files holds no more memory than a
 * small one. A run shorter than `BYTES_RUN` between Blobs (headers) rides in the Blob.
 */
export async function* gatherIntoWrites(chunks: AsyncIterable<Uint8Array | Blob>, minBytes: number, maxHeldBytes: number): AsyncGenerator<Blob | Uint8Array> {
  let group: BlobPart[] = [];
  let groupBytes = 0;
  let run: Uint8Array[] = [];
  let runBytes = 0;
  const takeRun = (): Uint8Array => {
    const out = concatBytes(run, runBytes);
    run = [];
    runBytes = 0;
    return out;
  };
  const takeGroup = (): Blob => {
    const out = new Blob(group);
    group = [];
    groupBytes = 0;
    return out;
  };
  for await (const chunk of chunks) {
    if (chunk instanceof Uint8Array) {
      run.push(chunk);
      runBytes += chunk.length;
      if (runBytes >= maxHeldBytes) {
        if (group.length > 0) yield takeGroup();
        yield takeRun();
      }
      continue;
    }
    if (runBytes >= BYTES_RUN) {
      if (group.length > 0) yield takeGroup();
      yield takeRun();
    } else if (runBytes > 0) {
      groupBytes += runBytes;
      group.push(...(run as BlobPart[]));
      run = [];
      runBytes = 0;
    }
    group.push(chunk);
    groupBytes += chunk.size;
    if (groupBytes >= minBytes) yield takeGroup();
  }
  if (group.length > 0 && runBytes < BYTES_RUN) {
    group.push(...(run as BlobPart[]));
    run = [];
    runBytes = 0;
  }
  if (group.length > 0) yield takeGroup();
  if (runBytes > 0) yield takeRun();
}

/** Bytes between Blobs shorter than this ride in the next Blob (headers and descriptors); longer runs are written as bytes. */
const BYTES_RUN = 256 * 1024;
