import * as Comlink from 'comlink';
import type { SyncApi } from './sync-client.ts';

/**
 * Registers the app's service worker (/sw.js, scope /w/), which answers file URLs
 * (`/w/<ns>/file/<path>`) by asking an open page for a port to its sync worker: this page
 * hands each such port to its worker. Browsers without service workers (or an insecure
 * context) simply have no file URLs; Open then falls back to a blob: URL.
 */
export function startFileUrls(api: SyncApi): void {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.addEventListener('message', (event: MessageEvent) => {
    const port = event.ports[0];
    if (event.data?.type !== 'nearsync:file-port' || !(port instanceof MessagePort)) return;
    void api.serveFileReads(Comlink.transfer(port, [port])).catch(() => port.close());
  });
  navigator.serviceWorker.startMessages();
  navigator.serviceWorker.register('/sw.js', { scope: '/w/', type: 'module' }).catch((error: unknown) => {
    console.warn('nearsync: the service worker for file URLs did not register:', error);
  });
}

/** Whether file URLs work in this page right now (the service worker controls it). */
export function fileUrlsReady(): boolean {
  return 'serviceWorker' in navigator && navigator.serviceWorker.controller !== null;
}
