/// <reference lib="webworker" />
import type { BlockHash } from '../src/protocol/index.ts';
import { BlockFiles } from './block-files.ts';
import { CacheBlocks } from './cache-blocks.ts';
import { sha256 } from './web-crypto.ts';
import { crc32 } from '../src/engine/zip/crc32.ts';
import type { BlockStoreKind, BlockWriteReply, BlockWriteRequest } from './block-writer.ts';

/**
 * Hashes large blocks and writes them into their block files, off the sync worker's thread.
 *
 * Why a thread of its own: a sync access handle's write blocks its thread (Chromium asks the
 * browser process for quota on every new file), about 20 ms per 4 MiB block on a busy 2-core
 * machine, and WebCrypto's digest ran on the calling thread too (about 8 ms). On the sync
 * worker's thread that work stopped it reading the server's responses meanwhile (measured:
 * 5 s of 17.7 s in `put`, 2 s in the digest for 1 GiB). The bytes come and go as transferred
 * buffers: nothing is copied, and the buffer returns to the sync worker's pool.
 *
 * A stored block's CRC-32 goes back with the answer (BlockCrcs keeps it): a zip then combines
 * the blocks' CRCs per file and never reads their bytes. It costs about 7 ms per 4 MiB block on
 * this thread (slice-by-8 at about 600 MB/s), off the sync worker's.
 *
 * Blocks of online-only files go to the evictable cache's storage bucket (cache-blocks.ts),
 * from this thread too: hashed and written on the sync worker's thread they made an online-only
 * open about three times slower than reading the same file once kept. A cache that cannot
 * take a block (a bucket the browser is clearing) leaves it to the kept store, as the sync
 * worker did, and the answer says where it went so the sync worker's indexes learn of it.
 */

let files: Promise<BlockFiles> | null = null;
let cache: CacheBlocks | null | undefined;

async function put(hash: BlockHash, bytes: Uint8Array, writerId: string, store: BlockStoreKind): Promise<BlockStoreKind> {
  if (store === 'cache') {
    cache ??= CacheBlocks.open(writerId);
    if (cache) {
      try {
        await cache.put(hash, bytes);
        return 'cache';
      } catch (error) {
        if (error instanceof DOMException && error.name === 'QuotaExceededError') throw error;
      }
    }
  }
  files ??= BlockFiles.open(writerId);
  await (await files).put(hash, bytes);
  return 'kept';
}

self.onmessage = async (event: MessageEvent<BlockWriteRequest>) => {
  // writerId names the sync worker's temporary directory: it holds the writer lock that keeps it from being tidied away.
  const { id, hash, buffer, length, writerId, store } = event.data;
  const bytes = new Uint8Array(buffer, 0, length);
  let reply: BlockWriteReply;
  try {
    const actual: BlockHash = await sha256(bytes);
    if (actual === hash) {
      const storedIn = await put(hash, bytes, writerId, store);
      reply = { id, actual, crc32: crc32(bytes), storedIn, buffer };
    } else {
      reply = { id, actual, buffer };
    }
  } catch (error) {
    const name = error instanceof Error || error instanceof DOMException ? error.name : 'Error';
    const message = error instanceof Error || error instanceof DOMException ? error.message : String(error);
    reply = { id, error: { name, message }, buffer };
  }
  (self as DedicatedWorkerGlobalScope).postMessage(reply, [buffer]);
};
