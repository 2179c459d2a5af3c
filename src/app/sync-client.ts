import * as Comlink from 'comlink';
import type { SyncWorkerApi } from '../../workers/sync-api.ts';
import { peerLabel } from './peer-settings.ts';

export type SyncApi = Comlink.Remote<SyncWorkerApi>;

/** Starts the one sync worker this page talks to. */
export async function startSyncWorker(): Promise<SyncApi> {
  const worker = new Worker(new URL('../../workers/sync.worker.ts', import.meta.url), { type: 'module' });
  const api = Comlink.wrap<SyncWorkerApi>(worker);
  // The peer label names this browser in version history and in its conflicted copies too.
  await api.init(location.origin, peerLabel());
  return api;
}
