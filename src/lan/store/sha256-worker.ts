import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
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
const { crc32 } = require('node:zlib');
parentPort.on('message', ({ id, buffer, offset, length, withCrc }) => {
  const bytes = new Uint8Array(buffer, offset, length);
  const hash = createHash('sha256').update(bytes).digest('hex');
  parentPort.postMessage({ id, hash, crc: withCrc ? crc32(bytes) : undefined });
});
`;

/** A block's SHA-256 and the CRC-32 of the same bytes. */
export interface HashAndCrc {
  hash: BlockHash;
  crc: number;
}

interface Pending {
  bytes: Uint8Array;
  withCrc: boolean;
  resolve: (result: HashAndCrc) => void;
}

export class Sha256Worker {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Hashes done on the worker so far (tests and diagnostics). */
  offloaded = 0;

  /** The hex SHA-256 of `bytes`: on the worker when they are shared and large enough. */
  async hash(bytes: Uint8Array): Promise<BlockHash> {
    return (await this.run(bytes, false)).hash;
  }

  /**
   * The SHA-256 and the CRC-32 of `bytes` in one trip (the CRC while the bytes are still in
   * the worker's cache): a LAN daemon keeps the CRC of every block it verified, so serving the
   * block later checks its read by the CRC alone (FolderBlockIndex).
   */
  hashAndCrc(bytes: Uint8Array): Promise<HashAndCrc> {
    return this.run(bytes, true);
  }

  private run(bytes: Uint8Array, withCrc: boolean): Promise<HashAndCrc> {
    if (!(bytes.buffer instanceof SharedArrayBuffer) || bytes.length < WORKER_MIN_BYTES) return Promise.resolve(hashHere(bytes, withCrc));
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    return new Promise<HashAndCrc>((resolve) => {
      this.pending.set(id, { bytes, withCrc, resolve });
      // A waiting hash keeps the process alive; an idle worker does not.
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, buffer: bytes.buffer, offset: bytes.byteOffset, length: bytes.length, withCrc });
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
    worker.on('message', (message: { id: number; hash: string; crc?: number }) => {
      const waiting = this.pending.get(message.id);
      if (!waiting) return;
      this.pending.delete(message.id);
      if (this.pending.size === 0) worker.unref();
      this.offloaded += 1;
      // -1 (never a CRC-32) when the CRC was not asked for: `hash` drops it.
      waiting.resolve({ hash: message.hash as BlockHash, crc: message.crc ?? -1 });
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
    for (const { bytes, withCrc, resolve } of waiting) resolve(hashHere(bytes, withCrc));
  }
}

function hashHere(bytes: Uint8Array, withCrc: boolean): HashAndCrc {
  return { hash: sha256Hex(bytes), crc: withCrc ? crc32(bytes) : -1 };
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
