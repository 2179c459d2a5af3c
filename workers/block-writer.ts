/// <reference lib="webworker" />
import type { BlockBufferPool } from '../src/engine/block-buffers.ts';
import type { BlockHash } from '../src/protocol/index.ts';

export interface BlockWriteRequest {
  id: number;
  hash: BlockHash;
  buffer: ArrayBuffer;
  length: number;
  writerId: string;
  /** Where a block whose hash matches goes: the kept store, or the evictable cache of online-only files' blocks. */
  store: BlockStoreKind;
}

export type BlockStoreKind = 'kept' | 'cache';

export type BlockWriteReply =
  | { id: number; actual: BlockHash; crc32?: number; storedIn?: BlockStoreKind; buffer: ArrayBuffer }
  | { id: number; error: { name: string; message: string }; buffer: ArrayBuffer };

/**
 * What the writer did with a block: its actual hash, and when stored (the hash matched) its
 * CRC-32 and where it went (a cache block the cache could not take goes to the kept store).
 */
export interface BlockWriteResult {
  actual: BlockHash;
  crc32?: number;
  storedIn?: BlockStoreKind;
}

interface Pending {
  resolve: (result: BlockWriteResult) => void;
  reject: (error: unknown) => void;
}

/**
 * The sync worker's side of the block writer (`block-writer.worker.ts`): hands a pooled
 * block's buffer over (transferred, not copied), and gets back the block's actual hash once
 * it is hashed and, when it matches, stored; the buffer comes back to the pool with the answer.
 */
export class BlockWriter {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private broken: Error | null = null;

  /** A writer, or null where a worker cannot start one (then blocks are hashed and stored on the sync worker's thread). */
  static start(writerId: string, pool: BlockBufferPool): BlockWriter | null {
    try {
      if (typeof Worker === 'undefined') return null;
      return new BlockWriter(writerId, pool, new Worker(new URL('./block-writer.worker.ts', import.meta.url), { type: 'module', name: 'nearsync block writer' }));
    } catch {
      return null;
    }
  }

  private constructor(
    private readonly writerId: string,
    private readonly pool: BlockBufferPool,
    worker: Worker,
  ) {
    this.worker = worker;
    this.worker.onmessage = (event: MessageEvent<BlockWriteReply>) => this.answer(event.data);
    this.worker.onerror = (event) => this.fail(new Error(`the block writer failed: ${event.message || 'no reason given'}`));
  }

  /** Whether `bytes` can go to the writer: a whole pooled buffer from its start, and the writer works. */
  accepts(bytes: Uint8Array): boolean {
    return this.broken === null && bytes.byteOffset === 0 && this.pool.owns(bytes) && bytes.buffer.byteLength === this.pool.size;
  }

  /**
   * Hashes and, when the hash is `hash`, stores the block in `store`; resolves with the actual hash (and
   * the CRC-32 of a block stored). The bytes' buffer is transferred (`bytes` is empty
   * afterwards) and returns to the pool.
   */
  hashAndPut(hash: BlockHash, bytes: Uint8Array, store: BlockStoreKind = 'kept'): Promise<BlockWriteResult> {
    const id = this.nextId++;
    const buffer = bytes.buffer as ArrayBuffer;
    const request: BlockWriteRequest = { id, hash, buffer, length: bytes.length, writerId: this.writerId, store };
    return new Promise<BlockWriteResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(request, [buffer]);
    });
  }

  private answer(reply: BlockWriteReply): void {
    this.pool.adopt(reply.buffer);
    this.pool.give(new Uint8Array(reply.buffer));
    const pending = this.pending.get(reply.id);
    if (!pending) return;
    this.pending.delete(reply.id);
    if ('actual' in reply) pending.resolve({ actual: reply.actual, crc32: reply.crc32, storedIn: reply.storedIn });
    else pending.reject(new DOMException(reply.error.message, reply.error.name));
  }

  private fail(error: Error): void {
    this.broken = error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}
