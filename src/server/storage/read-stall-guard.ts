import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';

/** A response body as Node's HTTP client delivers it (IncomingMessage has both fields). */
export type NetworkBody = Readable & { socket?: Socket | null; complete?: boolean };

export class ReadStalledError extends Error {
  override readonly name = 'ReadStalledError';
  constructor(idleMs: number) {
    super(`no bytes arrived for ${idleMs} ms while the reader was waiting`);
  }
}

/**
 * Destroys a response body whose network has gone quiet while its reader waits for bytes.
 *
 * A plain idle-socket timeout would also kill a healthy download whose reader is slow (a
 * paced or slow client leaves the socket paused with its buffers full), so this counts only
 * time in which nothing is buffered and the socket reads nothing.
 */
export function guardReadStall(body: NetworkBody, idleMs: number): void {
  const socket = body.socket;
  if (!socket || body.complete) return;
  let lastBytesRead = socket.bytesRead;
  let quietSince = Date.now();
  const timer = setInterval(
    () => {
      if (body.complete || body.destroyed) return stop();
      const bytesRead = socket.bytesRead;
      if (bytesRead !== lastBytesRead || body.readableLength > 0) {
        lastBytesRead = bytesRead;
        quietSince = Date.now();
      } else if (Date.now() - quietSince >= idleMs) {
        stop();
        body.destroy(new ReadStalledError(idleMs));
      }
    },
    Math.max(10, Math.min(1000, idleMs / 4)),
  );
  timer.unref();
  const stop = () => clearInterval(timer);
  body.once('close', stop);
  body.once('end', stop);
}
