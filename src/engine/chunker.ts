import { MAX_BLOCK_SIZE } from '../protocol/index.ts';
import { BlockBufferPool, readBodyInto } from './block-buffers.ts';
import { heldUntilSettled } from './held-while-pending.ts';

/**
 * Cuts a byte stream into blocks of exactly `blockSize` bytes (the last one shorter), never
 * holding more than one block plus one incoming chunk. An empty stream yields no blocks.
 */
export async function* cutBlocks(
  stream: ReadableStream<Uint8Array>,
  blockSize = MAX_BLOCK_SIZE,
): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  let block = new Uint8Array(blockSize);
  let filled = 0;
  try {
    for (;;) {
      // Held while the read waits (held-while-pending.ts): a pending read is no GC root of its own.
      const { done, value } = await heldUntilSettled(stream, reader.read());
      if (done) break;
      // A whole block at a block boundary (blobBlocks) goes as it is: no copy.
      if (filled === 0 && value.length === blockSize) {
        yield value;
        continue;
      }
      let offset = 0;
      while (offset < value.length) {
        const take = Math.min(blockSize - filled, value.length - offset);
        block.set(value.subarray(offset, offset + take), filled);
        filled += take;
        offset += take;
        if (filled === blockSize) {
          yield block;
          block = new Uint8Array(blockSize);
          filled = 0;
        }
      }
    }
    if (filled > 0) yield block.slice(0, filled);
  } finally {
    reader.releaseLock();
  }
}

/**
 * A Blob (a picked File) as a stream of whole blocks, each read from its own slice straight
 * into a buffer of its own (a BYOB read where the platform offers one), which `cutBlocks`
 * passes on without copying. *Why:* cutting `File.stream()`'s 64 KiB chunks into blocks cost
 * the sync worker 179 ms per 64 MiB upload (CPU profile, load about 13); reading a slice
 * into one buffer cost 50 ms for the same bytes. Up to `readsAhead` slices are read at once
 * while the consumer asks for more (the uploader hashes a few blocks ahead). With `pool`, each
 * slice is read into one of its buffers, which the consumer gives back when done with the block:
 * a fresh 4 MiB buffer per block is 1,024 fresh pages to fault in and zero, and the garbage
 * collector's to free (issue 14).
 */
export function blobBlocks(blob: Blob, blockSize = MAX_BLOCK_SIZE, readsAhead = 2, pool?: BlockBufferPool): ReadableStream<Uint8Array> {
  let offset = 0;
  const reads: Promise<Uint8Array>[] = [];
  const readNext = () => {
    const length = Math.min(blockSize, blob.size - offset);
    // Into `pool`, whose buffers the consumer gives back once done with a block; else a buffer of its own.
    const into = pool && length <= pool.size ? pool : new BlockBufferPool(length, 0);
    const read = readBodyInto(blob.slice(offset, offset + length).stream(), length, into);
    // A read ahead that fails is reported when its turn comes; until then it is not unhandled.
    read.catch(() => {});
    reads.push(read);
    offset += length;
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        while (reads.length < readsAhead && offset < blob.size) readNext();
        const next = reads.shift();
        if (!next) {
          controller.close();
          return;
        }
        controller.enqueue(await next);
      },
    },
    { highWaterMark: 0 },
  );
}
