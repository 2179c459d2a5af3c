import type { FileHandle } from 'node:fs/promises';
import { MAX_BLOCK_SIZE } from '../../protocol/index.ts';

/**
 * Writes block bytes to a file through a few reused private buffers: each block is first
 * copied (one native memcpy) into a buffer that has just been written from, then `pwrite`n
 * from there.
 *
 * Why: the receiving daemon's blocks arrive in pooled 4 MiB buffers, many of them in turn,
 * and the kernel's copy of them into the page cache was half of the receiver's CPU on the bench
 * machine (a PVM guest): `perf record -a` counted 230–346 samples of `copy_folio_from_iter_atomic`
 * per 256 MiB received against Syncthing's 18–48 for the same bytes, which it writes from small
 * reused buffers. Written from a few reused buffers, ours counted 33–249 (mean 152, 5 runs;
 * Syncthing 26–278 in the same runs: the count swings with the machine), issue 14. Why the
 * source matters is not known (the guest's shadow paging of a large working set, perhaps).
 * The memcpy costs about 30 ms per 256 MiB. When every buffer is busy, the bytes are written
 * as they are.
 */
export class ReusedWriteBuffers {
  private readonly free: Buffer[] = [];
  private made = 0;

  constructor(private readonly max = 4) {}

  async write(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
    const buffer = bytes.length <= MAX_BLOCK_SIZE ? this.take() : null;
    if (!buffer) return writeFully(handle, bytes, position);
    try {
      // `fill` with a view as the value is one memcpy, also from shared memory (copyNatively in socket-channel.ts).
      Buffer.prototype.fill.call(buffer, bytes, 0, bytes.length);
      await writeFully(handle, buffer.subarray(0, bytes.length), position);
    } finally {
      this.free.push(buffer);
    }
  }

  private take(): Buffer | null {
    const buffer = this.free.pop();
    if (buffer) return buffer;
    if (this.made >= this.max) return null;
    this.made += 1;
    return Buffer.allocUnsafeSlow(MAX_BLOCK_SIZE);
  }
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    if (bytesWritten === 0) throw new Error('the write made no progress');
    done += bytesWritten;
  }
}
