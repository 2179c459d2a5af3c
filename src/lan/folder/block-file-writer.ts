import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { DIRECT_IO_ALIGN as DIRECT_ALIGN, alignedForDirectIo } from '../../engine/page-aligned.ts';
import { MAX_BLOCK_SIZE } from '../../protocol/index.ts';
import { copyNatively } from '../tcp/socket-channel.ts';

const WASM_PAGE = 64 * 1024;

/** A temp file being assembled: its ordinary handle, and a second one past the page cache where the file system allows. */
export interface BlockFileTarget {
  handle: FileHandle;
  direct: FileHandle | null;
}

export interface BlockFileWriterOptions {
  /** Blocks written at once; a write waits for a free buffer beyond that. */
  buffers?: number;
  /** Write past the page cache (O_DIRECT) where the file system allows; default on Linux. */
  direct?: boolean;
  log?: (line: string) => void;
}

/**
 * Writes received blocks into the temp files they belong to with O_DIRECT, straight to the
 * disk, from page-aligned memory: where the block already is, or one of a few reused buffers.
 *
 * Why past the page cache: on the bench machine (a PVM guest that hands freed memory back to
 * its host) the kernel's copy into fresh page-cache pages, `copy_folio_from_iter_atomic`, was
 * 36 % of the receiving daemon's CPU in the transfer (1,029 of 2,834 `perf` samples for
 * 256 MiB, 0.5 s: 500 MB/s), and it swings from run to run (0.05–0.49 s of system time for the
 * same 256 MiB written buffered; 0.03–0.05 s with O_DIRECT), issue 14. Syncthing pays it too.
 * These are large files written once and read back rarely; the disk takes them at its own rate
 * (1.3 GB/s here), and the file's fsync before its rename has nothing left to flush.
 *
 * A block received into the LAN pool's page-aligned shared memory (`page-aligned.ts`) is
 * written from where it is; any other block is copied into one of the writer's buffers, which
 * live in one WebAssembly.Memory, whose data V8 maps page-aligned (O_DIRECT needs aligned
 * memory; a Buffer's address cannot be chosen). A block shorter than a multiple of
 * 4 KiB (a file's last) is written padded with zeros: the materialiser truncates every temp
 * file to its entry's size before the rename. Where the file system refuses O_DIRECT (tmpfs,
 * some network file systems: EINVAL), blocks go through the page cache as before, from the same
 * reused buffers (written from many pooled block buffers in turn, that copy had cost more still).
 */
export class BlockFileWriter {
  private readonly max: number;
  private directEnabled: boolean;
  private memory: WebAssembly.Memory | null = null;
  private readonly free: Uint8Array[] = [];
  private made = 0;
  private readonly waiting: Array<(buffer: Uint8Array) => void> = [];

  constructor(private readonly options: BlockFileWriterOptions = {}) {
    this.max = Math.max(1, options.buffers ?? 4);
    this.directEnabled = (options.direct ?? true) && constants.O_DIRECT !== undefined;
  }

  /**
   * A second descriptor of the file `handle` has open, for direct writes, or null where that
   * cannot be had. Opened through /proc/self/fd, so it is the very file, whatever its path is now.
   */
  async openDirect(handle: FileHandle): Promise<FileHandle | null> {
    if (!this.directEnabled) return null;
    try {
      return await open(`/proc/self/fd/${handle.fd}`, constants.O_WRONLY | constants.O_DIRECT);
    } catch {
      return null; // a file system without O_DIRECT, or no /proc: the page cache it is
    }
  }

  /** Writes `bytes` at `position` (a multiple of 4 KiB for a direct write; block i sits at i × 4 MiB). */
  async write(target: BlockFileTarget, bytes: Uint8Array, position: number): Promise<void> {
    if (bytes.length > MAX_BLOCK_SIZE) return writeFully(target.handle, bytes, position);
    const padded = Math.ceil(bytes.length / DIRECT_ALIGN) * DIRECT_ALIGN;
    // A block received into page-aligned pooled memory goes from there (the padding zeroed in
    // place, past the block's own bytes): no copy, no buffer of ours.
    if (target.direct && this.directEnabled && position % DIRECT_ALIGN === 0 && alignedForDirectIo(bytes, padded)) {
      new Uint8Array(bytes.buffer, bytes.byteOffset + bytes.length, padded - bytes.length).fill(0);
      if (await this.writeDirect(target.direct, new Uint8Array(bytes.buffer, bytes.byteOffset, padded), position)) return;
    }
    const buffer = await this.take();
    try {
      copyNatively(buffer, bytes, 0);
      if (target.direct && this.directEnabled && position % DIRECT_ALIGN === 0) {
        buffer.fill(0, bytes.length, padded);
        if (await this.writeDirect(target.direct, buffer.subarray(0, padded), position)) return;
      }
      await writeFully(target.handle, buffer.subarray(0, bytes.length), position);
    } finally {
      this.give(buffer);
    }
  }

  /** False if the file system refused the direct write (EINVAL): then none are tried again. */
  private async writeDirect(direct: FileHandle, bytes: Uint8Array, position: number): Promise<boolean> {
    try {
      await writeFully(direct, bytes, position);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
      this.directEnabled = false;
      this.options.log?.(`writing past the page cache failed (${(error as Error).message}); received blocks go through the page cache from now on`);
      return false;
    }
  }

  private take(): Promise<Uint8Array> | Uint8Array {
    const buffer = this.free.pop();
    if (buffer) return buffer;
    if (this.made < this.max) {
      this.memory ??= new WebAssembly.Memory({ initial: (this.max * MAX_BLOCK_SIZE) / WASM_PAGE });
      const made = new Uint8Array(this.memory.buffer, this.made * MAX_BLOCK_SIZE, MAX_BLOCK_SIZE);
      this.made += 1;
      return made;
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private give(buffer: Uint8Array): void {
    const next = this.waiting.shift();
    if (next) next(buffer);
    else this.free.push(buffer);
  }
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    if (bytesWritten === 0) throw new Error('the write made no progress');
    done += bytesWritten;
  }
}
