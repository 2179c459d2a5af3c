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
 * `parallel` blocks go at once from the first. A server that cannot name blocks answers null
 * (no such route: a server older than this page, as in a rolling deploy): sending stops, the
 * blocks already out settle, and this resolves null, so the caller hashes and sends by name
 * from the start (what was named meanwhile is found on the server then). *Why not probe with
 * the first block alone:* that held every upload's other three sends back for one block's
 * round trip (35–45 ms of a 64 MiB upload's 0.5 s on loopback), to save an old server at most
 * `parallel − 1` blocks once per session (ServerApi remembers the answer). Resolves with the
 * blocks in file order (each named and placed in the source), or null.
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
  let unnamed = false;
  const sendOne = async (index: number): Promise<void> => {
    const offset = index * blockSize;
    const length = Math.min(blockSize, size - offset);
    const body = slice(offset, length);
    // A file changed or removed since it was picked fails the request with a bare network
    // error ("Failed to fetch"); the reason worth showing is the read's.
    const hash = await put(body).catch(async (error: unknown) => {
      throw (await readFailure(body)) ?? error;
    });
    if (hash === null) {
      unnamed = true;
      stopped = true;
      return;
    }
    named[index] = { hash, offset, length };
    onSent(length);
  };
  let next = 0;
  const sender = async () => {
    while (!stopped && next < count) {
      const index = next++;
      try {
        await sendOne(index);
      } catch (error) {
        // The others stop at their next block instead of sending the rest for nothing.
        stopped = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, count)) }, sender));
  return unnamed ? null : named;
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
