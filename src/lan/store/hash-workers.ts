import { Worker } from 'node:worker_threads';
import type { BlockHash } from '../../protocol/index.ts';
import { sha256Hex } from './node-sha256.ts';

/** Plain JavaScript (a worker started from source text is not compiled by tsx). */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', ({ id, bytes }) => {
  parentPort.postMessage({ id, hash: createHash('sha256').update(bytes).digest('hex') });
});
`;

interface Pending {
  resolve: (hash: BlockHash) => void;
  bytes: Uint8Array;
}

/**
 * SHA-256 of blocks on worker threads. Why: on the receiving daemon one hash per 4 MiB block
 * held the main thread for 4–13 ms (a fifth of its time at 256 MiB), and meanwhile it read
 * nothing from the socket; on a worker the hash overlaps the next block's arrival. The bytes
 * are copied to the worker (about a millisecond per 4 MiB, a tenth of the hash), so the
 * caller's buffer stays its own. Blocks go to the worker with the fewest pending; a worker
 * that fails is replaced by hashing on the calling thread.
 */
export class Sha256Workers {
  private readonly workers: { worker: Worker; pending: Map<number, Pending> }[] = [];
  private nextId = 1;
  private closed = false;

  constructor(count = 1) {
    for (let i = 0; i < count; i++) this.spawn();
  }

  hash(bytes: Uint8Array): Promise<BlockHash> {
    const slot = this.workers.reduce<(typeof this.workers)[number] | null>((best, w) => (!best || w.pending.size < best.pending.size ? w : best), null);
    if (this.closed || !slot) return Promise.resolve(sha256Hex(bytes));
    const id = this.nextId++;
    return new Promise((resolve) => {
      slot.pending.set(id, { resolve, bytes });
      slot.worker.postMessage({ id, bytes });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const workers = this.workers.splice(0);
    for (const { pending } of workers) for (const { resolve, bytes } of pending.values()) resolve(sha256Hex(bytes));
    await Promise.all(workers.map(({ worker }) => worker.terminate()));
  }

  private spawn(): void {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    const slot = { worker, pending: new Map<number, Pending>() };
    worker.on('message', ({ id, hash }: { id: number; hash: BlockHash }) => {
      const pending = slot.pending.get(id);
      slot.pending.delete(id);
      pending?.resolve(hash);
    });
    const fail = () => {
      const index = this.workers.indexOf(slot);
      if (index < 0) return;
      this.workers.splice(index, 1);
      // What it still owed is hashed here; later blocks go to the others, or stay here.
      for (const { resolve, bytes } of slot.pending.values()) resolve(sha256Hex(bytes));
      slot.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', fail);
    this.workers.push(slot);
  }
}
