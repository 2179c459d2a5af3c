import { MAX_BLOCK_SIZE, ValidationError } from '../protocol/index.ts';
import { hold } from './held-while-pending.ts';
import { pageAlignedSharedBuffer } from './page-aligned.ts';

/**
 * Block-sized buffers reused from one fetched block to the next.
 *
 * Why: a fresh 4 MiB ArrayBuffer per block is freed only when the JS garbage collector runs,
 * and a worker whose heap holds little else collects late: syncing 4 GiB from the server left
 * about 460 MiB of such buffers in the renderer process at its peak. With a pool the buffers
 * live are about the blocks in flight plus those being hashed and stored.
 *
 * Ownership: `take` hands out a buffer; whoever reads into it `adopt`s the ArrayBuffer that
 * finally holds the bytes (a BYOB read transfers the buffer, so its identity changes), and
 * `give` returns it once nothing refers to the bytes any more (the block is stored, or
 * dropped). `give` ignores anything the pool did not hand out, so a caller may pass any block.
 * A store used with pooled blocks must not keep a reference to the bytes after `putBlock`.
 */
export class BlockBufferPool {
  private readonly free: ArrayBuffer[] = [];
  private readonly lent = new WeakSet<ArrayBuffer>();
  private takenSinceTrim = false;
  private trimTimer: ReturnType<typeof setTimeout> | null = null;
  /** Buffers made since the start (for tests and diagnostics). */
  created = 0;

  constructor(
    /** Size of every buffer. */
    readonly size = MAX_BLOCK_SIZE,
    /** Free buffers kept at most; more are left to the garbage collector. */
    private readonly keep = 16,
    /** Free buffers are dropped once none was taken for this long (an idle worker keeps none). */
    private readonly idleMs = 10_000,
    /**
     * Make SharedArrayBuffers: a Node LAN daemon hashes received blocks on a worker thread that
     * reads the same memory (no copy, no transfer). Such buffers must never be transferred.
     */
    private readonly shared = false,
  ) {}

  /** A buffer of `size` bytes (old contents are not cleared). */
  take(): ArrayBuffer {
    const buffer = this.free.pop() ?? this.make();
    this.lent.add(buffer);
    this.takenSinceTrim = true;
    return buffer;
  }

  /** `buffer` (a transfer of a taken one) now holds the bytes: it is lent out instead. */
  adopt(buffer: ArrayBuffer): void {
    this.lent.add(buffer);
  }

  /** Whether `bytes` are a view into a buffer this pool lent out. */
  owns(bytes: Uint8Array): boolean {
    return this.lent.has(bytes.buffer as ArrayBuffer);
  }

  /** Returns the buffer under `bytes` if the pool lent it out; anything else is ignored. */
  give(bytes: Uint8Array): void {
    const buffer = bytes.buffer as ArrayBuffer;
    if (!this.lent.has(buffer)) return;
    this.lent.delete(buffer);
    // A detached buffer (transferred meanwhile) has no bytes any more. Shared buffers are all
    // kept (as many as were out at once): V8 does not count their memory towards collecting
    // garbage, so dropped ones would pile up instead of being reused.
    if (buffer.byteLength !== this.size || (this.free.length >= this.keep && !this.shared)) return;
    this.free.push(buffer);
    this.armTrim();
  }

  /** Drops every free buffer. */
  trim(): void {
    this.free.length = 0;
  }

  get freeCount(): number {
    return this.free.length;
  }

  private armTrim(): void {
    if (this.trimTimer) return;
    this.takenSinceTrim = false;
    this.trimTimer = setTimeout(() => {
      this.trimTimer = null;
      if (!this.takenSinceTrim) this.trim();
      else if (this.free.length > 0) this.armTrim();
    }, this.idleMs);
    // Never keeps a Node process (the LAN daemon, tests) alive.
    (this.trimTimer as { unref?: () => void }).unref?.();
  }

  private make(): ArrayBuffer {
    this.created += 1;
    if (!this.shared) return new ArrayBuffer(this.size);
    // Typed as ArrayBuffer for the pool's users: a shared one is read and written the same way.
    // Page-aligned where it can be: the daemon writes received blocks from it past the page cache.
    return (pageAlignedSharedBuffer(this.size) ?? new SharedArrayBuffer(this.size)) as unknown as ArrayBuffer;
  }
}

/** Blocks smaller than this are read into buffers of their own size: a pooled 4 MiB buffer would waste most of itself. */
export const POOLED_BLOCK_MIN = 1024 * 1024;

/**
 * Reads a response body of exactly `length` bytes into a buffer from `pool`: with a BYOB
 * reader where the stream supports one (Chromium's fetch bodies do: the bytes go from the
 * network straight into the buffer, no chunk objects), else chunk by chunk with a copy. A
 * body shorter or longer than `length` is an error.
 */
export async function readBodyInto(body: ReadableStream<Uint8Array>, length: number, pool: BlockBufferPool): Promise<Uint8Array> {
  if (length > pool.size) throw new RangeError(`a body of ${length} bytes does not fit a ${pool.size}-byte buffer`);
  let byob: ReadableStreamBYOBReader | null = null;
  try {
    byob = body.getReader({ mode: 'byob' });
  } catch {
    // Not a byte stream: read chunks and copy them.
  }
  const reader = byob ?? body.getReader();
  const release = hold(body);
  let buffer = pool.take();
  let filled = 0;
  try {
    if (byob) {
      while (filled < length) {
        const { done, value } = await byob.read(new Uint8Array(buffer, filled, length - filled));
        if (!value) throw new Error('the body stream gave its buffer back empty');
        buffer = value.buffer as ArrayBuffer;
        if (done) break;
        filled += value.byteLength;
      }
      // The declared length is all there may be: look for the end (into a byte of its own).
      const tail = filled === length ? await byob.read(new Uint8Array(1)) : { done: true };
      if (!tail.done) throw new ValidationError('block', `the body is longer than the ${length} bytes declared`);
    } else {
      const chunks = reader as ReadableStreamDefaultReader<Uint8Array>;
      const target = new Uint8Array(buffer);
      for (;;) {
        const { done, value } = await chunks.read();
        if (done) break;
        if (filled + value.length > length) {
          throw new ValidationError('block', `the body is longer than the ${length} bytes declared`);
        }
        target.set(value, filled);
        filled += value.length;
      }
    }
    if (filled !== length) throw new Error(`the body ended after ${filled} of ${length} bytes`);
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  } finally {
    reader.releaseLock();
    release();
  }
  pool.adopt(buffer);
  return new Uint8Array(buffer, 0, length);
}
