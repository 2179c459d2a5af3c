import type { IncomingMessage } from 'node:http';
import { HttpError } from './errors.ts';

/** The client went away before sending the whole body. */
export class BodyAbortedError extends Error {
  override readonly name = 'BodyAbortedError';
  constructor() {
    super('request body aborted by the client');
  }
}

export function tooLarge(limit: number): HttpError {
  return new HttpError(413, 'too_large', `request body is larger than ${limit} bytes`);
}

/**
 * Streams a request body into `onChunk`, honouring backpressure when `onChunk` returns a
 * promise. Rejects with 413 as soon as the declared or counted length passes `limit`, and
 * with BodyAbortedError when the connection closes first. Never destroys the request, so
 * an error response can still be sent; the caller drains or drops the rest.
 */
export function readBody(
  req: IncomingMessage,
  limit: number,
  onChunk: (chunk: Buffer) => void | Promise<void>,
): Promise<number> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit));
  return new Promise<number>((resolve, reject) => {
    let total = 0;
    let settled = false;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      cleanup();
      req.pause();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      if (settled) return;
      total += chunk.length;
      if (total > limit) return fail(tooLarge(limit));
      let result: void | Promise<void>;
      try {
        result = onChunk(chunk);
      } catch (err) {
        return fail(err);
      }
      if (result && typeof result.then === 'function') {
        req.pause();
        result.then(() => {
          if (!settled) req.resume();
        }, fail);
      }
    };
    const onEnd = () => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve(total);
    };
    const onError = () => fail(new BodyAbortedError());
    const onClose = () => {
      if (!req.complete) fail(new BodyAbortedError());
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
    if (req.complete && req.readableEnded) onEnd();
  });
}
