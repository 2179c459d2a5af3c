import { StorageFullError } from '../src/engine/storage-full.ts';

/**
 * IndexedDB reports a full quota as a DOMException named QuotaExceededError (on the request or
 * on the aborted transaction). The engine must tell that apart from a broken source, so it
 * becomes a StorageFullError; anything else passes through unchanged.
 */
export function asStorageError(error: unknown): unknown {
  const name = error instanceof Error || error instanceof DOMException ? error.name : '';
  if (name === 'QuotaExceededError') {
    const detail = error instanceof Error && error.message ? `: ${error.message}` : '';
    return new StorageFullError(`the browser refused to store more for this site (${name}${detail})`);
  }
  return error;
}

/** This origin's storage as the browser reports it, or null where the API is missing. */
export async function storageEstimate(): Promise<{ usage: number; quota: number; persisted: boolean } | null> {
  if (!navigator.storage?.estimate) return null;
  const estimate = await navigator.storage.estimate();
  const persisted = (await navigator.storage.persisted?.().catch(() => false)) ?? false;
  return { usage: estimate.usage ?? 0, quota: estimate.quota ?? 0, persisted };
}
