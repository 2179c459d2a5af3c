import type { StorageView } from './sync-api.ts';

/** This origin's storage as the browser reports it, or null where the API is missing. */
export async function storageEstimate(): Promise<StorageView | null> {
  if (!navigator.storage?.estimate) return null;
  const estimate = await navigator.storage.estimate();
  const persisted = (await navigator.storage.persisted?.().catch(() => false)) ?? false;
  return { usage: estimate.usage ?? 0, quota: estimate.quota ?? 0, persisted };
}
