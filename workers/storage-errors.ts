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

/** This origin's storage as the browser reports it, or null where the API is missing. */
export async function storageEstimate(): Promise<{ usage: number; quota: number; persisted: boolean } | null> {
  if (!navigator.storage?.estimate) return null;
  const estimate = await navigator.storage.estimate();
  const persisted = (await navigator.storage.persisted?.().catch(() => false)) ?? false;
  return { usage: estimate.usage ?? 0, quota: estimate.quota ?? 0, persisted };
}
