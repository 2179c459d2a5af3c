import { MAX_BLOCK_SIZE } from '../../protocol/index.ts';

/** Blocks smaller than this are read into buffers of their own size (a 4 MiB one would waste most of itself). */
const SMALLEST_POOLED = 256 * 1024;

/**
 * 4 MiB buffers for blocks a LAN link serves, used again once every byte of the block has
 * been written to the socket. Why: the serving daemon read each block into a fresh 4 MiB buffer,
 * and collecting them was a fifth of its main thread while serving (issue 14 profile).
 *
 * A buffer is only reused once the socket has taken all of the block's bytes (`written`,
 * from the socket's write callbacks): a block whose serving is cancelled, refused or cut short
 * by a broken connection is never reused, and the garbage collector takes it as before. So no
 * byte can be overwritten while it is still to be sent.
 */
export class ServingBuffers {
  private readonly free: ArrayBuffer[] = [];
  /** Taken buffers → bytes of their block not yet written out. Weak: an abandoned block is collected. */
  private readonly unsent = new WeakMap<ArrayBuffer, number>();
  /** Buffers made since the start (tests and diagnostics). */
  created = 0;

  constructor(private readonly keep = 8) {}

  /** A view of `length` bytes to read a block into (old contents are not cleared). */
  take(length: number): Uint8Array {
    if (length < SMALLEST_POOLED || length > MAX_BLOCK_SIZE) return new Uint8Array(length);
    const buffer = this.free.pop() ?? this.make();
    this.unsent.set(buffer, length);
    return new Uint8Array(buffer, 0, length);
  }

  /** A taken view not handed to anyone (its read failed or its bytes did not check out). */
  giveBack(bytes: Uint8Array): void {
    const buffer = bytes.buffer as ArrayBuffer;
    if (this.unsent.delete(buffer)) this.recycle(buffer);
  }

  /** The socket took `chunk` (part of a served block) for good: once it took the whole block, its buffer is free. */
  written(chunk: Uint8Array): void {
    const buffer = chunk.buffer as ArrayBuffer;
    const left = this.unsent.get(buffer);
    if (left === undefined) return;
    if (left > chunk.length) {
      this.unsent.set(buffer, left - chunk.length);
      return;
    }
    this.unsent.delete(buffer);
    this.recycle(buffer);
  }

  get freeCount(): number {
    return this.free.length;
  }

  private recycle(buffer: ArrayBuffer): void {
    if (this.free.length < this.keep) this.free.push(buffer);
  }

  private make(): ArrayBuffer {
    this.created += 1;
    return new ArrayBuffer(MAX_BLOCK_SIZE);
  }
}

/** The process's one pool: the folder's readers take from it, the LAN sockets give back. */
export const servingBuffers = new ServingBuffers();
