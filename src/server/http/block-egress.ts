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

/** Writes bytes that frame blocks (not block content: neither paced nor counted). False when the client went away. */
export async function sendFraming(ctx: RequestContext, bytes: Uint8Array): Promise<boolean> {
  const { res, clientGone } = ctx;
  if (clientGone.aborted || res.destroyed) return false;
  ctx.stats.bytesOut += bytes.length;
  if (!res.write(bytes)) await drained(res);
  return !clientGone.aborted;
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
