import * as Comlink from 'comlink';
import type { SyncWorkerApi } from '../../workers/sync-api.ts';

export type SyncApi = Comlink.Remote<SyncWorkerApi>;

/** Starts the one sync worker this page talks to. */
export async function startSyncWorker(): Promise<SyncApi> {
  const worker = new Worker(new URL('../../workers/sync.worker.ts', import.meta.url), { type: 'module' });
  const api = Comlink.wrap<SyncWorkerApi>(worker);
  await api.init(location.origin);
  return api;
}
