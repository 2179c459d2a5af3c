import { Worker } from 'node:worker_threads';
import type { BlockHash } from '../../protocol/index.ts';
import { sha256Hex } from './node-sha256.ts';

/**
 * SHA-256 of block bytes on a worker thread, for bytes held in a SharedArrayBuffer: the
 * worker reads the very same memory, so nothing is copied or transferred, and the caller's
 * buffer (a pooled LAN block buffer, a block read from the folder) stays where it is.
 * Bytes in an ordinary ArrayBuffer, and small ones, are hashed here on the calling thread:
 * they are never cloned to the worker.
 *
 * Why: the receiving daemon's main thread decrypts TLS, decodes frames, hashes and writes;
 * the sending one reads, hashes and encrypts. Hashing is the largest piece of that work that
 * needs no JS state (issue 14), so it runs beside the main thread instead of inside it. An
 * earlier try posted each 4 MiB block with a structured clone, and the copy cost more than the
 * hash it moved.
 *
 * The caller must not change the bytes until the promise settles (the pooled buffers are
 * reused only after the block is stored, which waits for the hash). If the worker dies, what it
 * held is hashed here instead, and the next call starts a new one.
 */

/** Below this the messaging costs more than the hash (two messages against ~0.5 ms per MiB). */
const WORKER_MIN_BYTES = 256 * 1024;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', ({ id, buffer, offset, length }) => {
  const hash = createHash('sha256').update(new Uint8Array(buffer, offset, length)).digest('hex');
  parentPort.postMessage({ id, hash });
});
`;

interface Pending {
  bytes: Uint8Array;
  resolve: (hash: BlockHash) => void;
}

export class Sha256Worker {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Hashes done on the worker so far (tests and diagnostics). */
  offloaded = 0;

  /** The hex SHA-256 of `bytes`: on the worker when they are shared and large enough. */
  hash(bytes: Uint8Array): Promise<BlockHash> {
    if (!(bytes.buffer instanceof SharedArrayBuffer) || bytes.length < WORKER_MIN_BYTES) return Promise.resolve(sha256Hex(bytes));
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    return new Promise<BlockHash>((resolve) => {
      this.pending.set(id, { bytes, resolve });
      // A waiting hash keeps the process alive; an idle worker does not.
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, buffer: bytes.buffer, offset: bytes.byteOffset, length: bytes.length });
    });
  }

  /** Ends the worker; later calls start another. Hashes in flight are finished here. */
  async close(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    this.worker = null;
    this.settleHere();
    await worker.terminate();
  }

  private start(): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    worker.on('message', (message: { id: number; hash: string }) => {
      const waiting = this.pending.get(message.id);
      if (!waiting) return;
      this.pending.delete(message.id);
      if (this.pending.size === 0) worker.unref();
      this.offloaded += 1;
      waiting.resolve(message.hash as BlockHash);
    });
    const lost = () => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.settleHere();
    };
    worker.on('error', lost);
    worker.on('exit', lost);
    this.worker = worker;
    return worker;
  }

  /** Hashes what the worker held on this thread (the bytes are still here: the memory is shared). */
  private settleHere(): void {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const { bytes, resolve } of waiting) resolve(sha256Hex(bytes));
  }
}

/**
 * The process's one hash worker: every store of every daemon in the process shares it (a
 * second worker would only compete for the same cores).
 */
export const sharedSha256Worker = new Sha256Worker();

/**
 * Bytes of `length` in shared memory, so `Sha256Worker` can hash them where they are. For
 * tests and pools only: V8 does not count SharedArrayBuffer memory towards collecting garbage,
 * so fresh ones per block pile up unreferenced (1.6 GB of RSS after 400 blocks of 4 MiB);
 * reuse them (`BlockBufferPool` with `shared`).
 */
export function sharedBytes(length: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(length));
}
