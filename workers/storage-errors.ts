import { StorageFullError } from '../src/engine/storage-full.ts';

/**
 * Browsers report a full quota as a DOMException named QuotaExceededError (IndexedDB on the
 * request or the aborted transaction, the file system on a write). The engine must tell that
 * apart from a broken source, so it becomes a StorageFullError; null for any other error.
 */
export function storageFullError(error: unknown): StorageFullError | null {
  const name = error instanceof Error || error instanceof DOMException ? error.name : '';
  if (name !== 'QuotaExceededError') return null;
  const detail = error instanceof Error && error.message ? `: ${error.message}` : '';
  return new StorageFullError(`the browser refused to store more for this site (${name}${detail})`);
}
