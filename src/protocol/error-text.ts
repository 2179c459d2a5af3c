/**
 * A readable sentence for anything thrown, for banners and logs. Browser storage and
 * network failures often carry no message at all (a DOMException whose message is empty,
 * an `Error('')`, a bare Event from an IndexedDB request), and "Could not fetch: " with
 * nothing after it tells the user nothing. Platform-free: it reads `name`, `message` and
 * `cause` as plain properties, so it needs no DOM types.
 */

/** What the browser's exception names mean, for a user. */
const EXCEPTION_SENTENCES: Record<string, string> = {
  QuotaExceededError: "the browser refused to store more: this site's storage quota is used up or the disk is full",
  UnknownError: 'the browser storage failed without saying why (often a full disk or a storage limit of the browser)',
  NotReadableError: 'the data could not be read (the file changed, moved, or is no longer accessible)',
  NotFoundError: 'something the operation needed was not found',
  NoModificationAllowedError: 'the file is locked by another tab or program',
  InvalidStateError: 'the browser object was no longer usable (closed or already finished)',
  TransactionInactiveError: 'the storage transaction had already finished',
  ConstraintError: 'the storage refused a duplicate or invalid entry',
  DataError: 'the storage refused the data',
  DataCloneError: 'the data could not be copied between threads',
  VersionError: 'a newer version of the app changed the storage: reload this tab',
  AbortError: 'the operation was aborted',
  TimeoutError: 'the operation timed out',
  NetworkError: 'the network connection failed',
  SecurityError: 'the browser blocked the operation for security reasons',
  OperationError: 'the operation failed',
  EncodingError: 'the data could not be decoded',
  NotSupportedError: 'this browser does not support the operation',
};

const MAX_DEPTH = 3;

export function describeError(error: unknown): string {
  return describe(error, 0);
}

function describe(error: unknown, depth: number): string {
  if (error === undefined || error === null) return 'no reason was given (the failure carried no error value)';
  if (typeof error === 'string') return error.trim() || 'no reason was given (an empty error message)';
  if (typeof error !== 'object') return String(error);
  const record = error as { name?: unknown; message?: unknown; cause?: unknown; type?: unknown; target?: unknown };
  if (looksLikeEvent(record)) return describeEvent(record, depth);
  const name = typeof record.name === 'string' ? record.name : '';
  const message = typeof record.message === 'string' ? record.message.trim() : '';
  const known = EXCEPTION_SENTENCES[name];
  let text: string;
  if (known) text = message ? `${known} (${name}: ${message})` : `${known} (${name})`;
  else if (message) text = message;
  else if (name && name !== 'Error') text = `${name} with no message`;
  else text = 'an error with no message';
  if (record.cause !== undefined && depth < MAX_DEPTH) {
    const cause = describe(record.cause, depth + 1);
    // Some errors already spell their cause out in their message (BlockStoreError).
    if (!text.includes(cause)) text += `, because ${cause}`;
  }
  return text;
}

/** An Event, as an IndexedDB request or a data channel rejects with when code passes one on. */
function looksLikeEvent(record: { type?: unknown; target?: unknown; message?: unknown }): boolean {
  return typeof record.type === 'string' && 'target' in record && record.message === undefined;
}

function describeEvent(event: { type?: unknown; target?: unknown }, depth: number): string {
  const target = event.target as { error?: unknown } | null | undefined;
  const inner = target && typeof target === 'object' && 'error' in target ? target.error : undefined;
  if (inner !== undefined && inner !== null && depth < MAX_DEPTH) return describe(inner, depth + 1);
  return `a "${String(event.type)}" event with no error attached`;
}
