/**
 * Messages on the MessagePort between the service worker (which answers file URLs) and a
 * page's sync worker (which holds the blocks). One port per HTTP request: the service worker
 * opens, then pulls one piece at a time (the response body's back-pressure), and cancels
 * when the reader goes away. Each side validates what the other sends.
 */
export type FileReadRequest =
  | { type: 'open'; ns: string; path: string; range: string | null }
  | { type: 'pull' }
  | { type: 'cancel' };

export type FileReadReply =
  /** `end` inclusive (-1 for an empty file); status 206 for a Range answer. */
  | { type: 'head'; status: 200 | 206; size: number; start: number; end: number; synced: boolean }
  | { type: 'refused'; status: 400 | 404 | 416 | 503; message: string; size?: number }
  /** The next bytes of the range, in order: a slice of a stored block, or a verified piece still arriving (bytes). */
  | { type: 'piece'; blob: Blob }
  | { type: 'piece'; bytes: Uint8Array }
  | { type: 'end' }
  | { type: 'failed'; message: string };

const REFUSED_STATUSES = new Set([400, 404, 416, 503]);
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

export function parseFileReadRequest(data: unknown): FileReadRequest | null {
  if (typeof data !== 'object' || data === null) return null;
  const message = data as Record<string, unknown>;
  if (message.type === 'pull' || message.type === 'cancel') return { type: message.type };
  if (message.type !== 'open' || typeof message.ns !== 'string' || typeof message.path !== 'string') return null;
  if (message.range !== null && (typeof message.range !== 'string' || message.range.length > 200)) return null;
  return { type: 'open', ns: message.ns, path: message.path, range: message.range };
}

export function parseFileReadReply(data: unknown): FileReadReply | null {
  if (typeof data !== 'object' || data === null) return null;
  const message = data as Record<string, unknown>;
  switch (message.type) {
    case 'head': {
      const { status, size, start, end } = message;
      if ((status !== 200 && status !== 206) || !isCount(size) || !isCount(start)) return null;
      if (typeof end !== 'number' || !Number.isSafeInteger(end) || end < start - 1 || end >= size) return null;
      return { type: 'head', status, size, start, end, synced: message.synced === true };
    }
    case 'refused': {
      const { status, size } = message;
      if (typeof status !== 'number' || !REFUSED_STATUSES.has(status) || typeof message.message !== 'string') return null;
      if (size !== undefined && !isCount(size)) return null;
      return { type: 'refused', status: status as 400 | 404 | 416 | 503, message: message.message, ...(size === undefined ? {} : { size }) };
    }
    case 'piece':
      if (message.blob instanceof Blob && message.bytes === undefined) return { type: 'piece', blob: message.blob };
      if (message.bytes instanceof Uint8Array && message.blob === undefined) return { type: 'piece', bytes: message.bytes };
      return null;
    case 'end':
      return { type: 'end' };
    case 'failed':
      return typeof message.message === 'string' ? { type: 'failed', message: message.message } : null;
    default:
      return null;
  }
}
