import { MAX_BLOCK_SIZE, type BlockHash } from '../protocol/index.ts';
import type { SourceSlice } from './keep-from-source.ts';

/**
 * Sends a file's blocks as slices of its source, unread on this side, for the server to name
 * (POST /api/v1/blocks answers each block's SHA-256). *Why:* hashing first means reading every
 * block into the page and then once more to send it; a slice sent as it is lies on disk, read
 * once by the browser's network stack (issue 14: the upload against a plain fetch PUT). The
 * cost is deduplication: nothing is asked before it is sent, so this is for files the server
 * is not expected to hold already (a new path), and the caller checks the names later when it
 * keeps its local copy from the source.
 *
 * The first block goes alone: a server that cannot name blocks answers null, and nothing else
 * was sent. Then `parallel` at a time. Resolves with the blocks in file order (each named and
 * placed in the source), or null.
 */
export async function sendForServerToName(
  size: number,
  slice: (offset: number, length: number) => Blob,
  put: (body: Blob) => Promise<BlockHash | null>,
  parallel: number,
  onSent: (length: number) => void,
  blockSize = MAX_BLOCK_SIZE,
): Promise<SourceSlice[] | null> {
  const count = Math.ceil(size / blockSize);
  const named = new Array<SourceSlice>(count);
  let stopped = false;
  const sendOne = async (index: number): Promise<boolean> => {
    const offset = index * blockSize;
    const length = Math.min(blockSize, size - offset);
    const body = slice(offset, length);
    // A file changed or removed since it was picked fails the request with a bare network
    // error ("Failed to fetch"); the reason worth showing is the read's.
    const hash = await put(body).catch(async (error: unknown) => {
      throw (await readFailure(body)) ?? error;
    });
    if (hash === null) return false;
    named[index] = { hash, offset, length };
    onSent(length);
    return true;
  };
  if (count === 0) return [];
  if (!(await sendOne(0))) return null;
  let next = 1;
  const sender = async () => {
    while (!stopped && next < count) {
      const index = next++;
      try {
        if (!(await sendOne(index))) throw new Error('the server stopped naming blocks during the upload');
      } catch (error) {
        // The others stop at their next block instead of sending the rest for nothing.
        stopped = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, count - 1)) }, sender));
  return named;
}

/** The error reading `body` gives now, or null when it reads. */
async function readFailure(body: Blob): Promise<unknown> {
  try {
    await body.slice(0, 1).arrayBuffer();
    return null;
  } catch (error) {
    return error;
  }
}
