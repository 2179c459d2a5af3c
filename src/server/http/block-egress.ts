import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { RequestContext, ServerDeps } from '../context.ts';

/**
 * Block bytes on their way to a client, shared by the single block GET and the batch
 * download: paced by the egress limiter, counted in `blockBytesServed` as each piece is
 * flushed and in `blockRequestsServed` once a whole block is, waiting for the socket to
 * drain so that a slow client holds at most a socket buffer of ours.
 */

/**
 * Writes one block of `size` bytes from `stream`. Resolves false when the client went away;
 * throws when the stream fails or does not hold exactly `size` bytes (the response is then
 * broken: the caller destroys it). The stream is always destroyed.
 */
export async function sendBlockBytes(ctx: RequestContext, deps: ServerDeps, stream: Readable, size: number): Promise<boolean> {
  const { res, clientGone } = ctx;
  const slice = deps.egress?.sliceBytes ?? Number.MAX_SAFE_INTEGER;
  let written = 0;
  let flushed = 0;
  const onFlushed = (bytes: number) => (err?: Error | null) => {
    if (err) return;
    deps.metrics.blockBytesServed += bytes;
    flushed += bytes;
    if (flushed === size) deps.metrics.blockRequestsServed++;
  };
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (written + chunk.length > size) throw new Error(`the block store returned more than the ${size} bytes it announced`);
      for (let offset = 0; offset < chunk.length; offset += slice) {
        const piece = slice >= chunk.length ? chunk : chunk.subarray(offset, offset + slice);
        if (deps.egress) await deps.egress.take(piece.length, clientGone);
        if (clientGone.aborted || res.destroyed) return false;
        const ok = res.write(piece, onFlushed(piece.length));
        written += piece.length;
        ctx.stats.bytesOut += piece.length;
        if (!ok) await drained(res);
      }
    }
    if (written !== size) throw new Error(`the block store returned ${written} of the ${size} bytes it announced`);
    return !clientGone.aborted;
  } finally {
    stream.destroy();
  }
}

/** Bytes gathered into one socket write by a BatchWriter (at most; less when the egress limiter's slice is smaller). */
export const COALESCE_BYTES = 64 * 1024;

/**
 * Writes a response made of many small pieces (record headers, blocks held in memory) in
 * few socket writes: pieces are gathered up to COALESCE_BYTES of block content (or the egress
 * limiter's slice, if smaller) and written together. Block bytes are paced, and counted in
 * `blockBytesServed` (and each whole block in `blockRequestsServed`) when the write that ends
 * them is flushed, as sendBlockBytes does; framing is neither paced nor counted. A block
 * larger than the room left is split across writes. Call flush() before writing to the
 * response any other way, and at the end.
 */
export class BatchWriter {
  private parts: Buffer[] = [];
  private partBytes = 0;
  private blockBytes = 0;
  private wholeBlocks = 0;
  private readonly limit: number;

  constructor(
    private readonly ctx: RequestContext,
    private readonly deps: ServerDeps,
  ) {
    this.limit = Math.min(COALESCE_BYTES, deps.egress?.sliceBytes ?? COALESCE_BYTES);
  }

  /** Framing bytes. False when the client went away. */
  async framing(bytes: Uint8Array): Promise<boolean> {
    this.parts.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    this.partBytes += bytes.byteLength;
    return this.partBytes >= this.limit ? this.flush() : !this.ctx.clientGone.aborted;
  }

  /** A whole block's bytes. False when the client went away. */
  async block(bytes: Buffer): Promise<boolean> {
    let offset = 0;
    do {
      const piece = bytes.subarray(offset, offset + (this.limit - this.blockBytes));
      offset += piece.length;
      this.parts.push(piece);
      this.partBytes += piece.length;
      this.blockBytes += piece.length;
      if (offset === bytes.length) this.wholeBlocks++;
      if ((this.blockBytes >= this.limit || this.partBytes >= this.limit) && !(await this.flush())) return false;
    } while (offset < bytes.length);
    return !this.ctx.clientGone.aborted;
  }

  /** Writes what is gathered, after the limiter allows its block bytes. False when the client went away. */
  async flush(): Promise<boolean> {
    const { res, clientGone } = this.ctx;
    if (this.partBytes === 0) return !clientGone.aborted;
    const { parts, partBytes, blockBytes, wholeBlocks } = this;
    this.parts = [];
    this.partBytes = 0;
    this.blockBytes = 0;
    this.wholeBlocks = 0;
    if (blockBytes > 0 && this.deps.egress) await this.deps.egress.take(blockBytes, clientGone);
    if (clientGone.aborted || res.destroyed) return false;
    const metrics = this.deps.metrics;
    const ok = res.write(parts.length === 1 ? parts[0] : Buffer.concat(parts, partBytes), (err) => {
      if (err) return;
      metrics.blockBytesServed += blockBytes;
      metrics.blockRequestsServed += wholeBlocks;
    });
    this.ctx.stats.bytesOut += partBytes;
    if (!ok) await drained(res);
    return !clientGone.aborted;
  }
}

/** Writes one block held in memory (paced and counted like sendBlockBytes). False when the client went away. */
export async function sendBlockInMemory(ctx: RequestContext, deps: ServerDeps, bytes: Buffer): Promise<boolean> {
  const writer = new BatchWriter(ctx, deps);
  return (await writer.block(bytes)) && writer.flush();
}

/**
 * Runs `body` on a response whose headers are sent, then ends it; a failure part-way can
 * no longer become an error response, so the connection is cut (the client sees a short body).
 */
export async function finishStreamedResponse(ctx: RequestContext, deps: ServerDeps, body: () => Promise<boolean>): Promise<void> {
  try {
    if (await body()) ctx.res.end();
  } catch (err) {
    if (!ctx.clientGone.aborted) deps.logger.warn('block stream failed', { err });
    ctx.res.destroy();
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
