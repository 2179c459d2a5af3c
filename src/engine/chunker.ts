import { MAX_BLOCK_SIZE } from '../protocol/index.ts';

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
      const { done, value } = await reader.read();
      if (done) break;
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
