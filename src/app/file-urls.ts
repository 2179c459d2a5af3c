import * as Comlink from 'comlink';
import { parseFileUrlPath } from '../protocol/index.ts';
import { loadingPage, messagePage } from './message-page.ts';
import type { Page } from './page.ts';
import type { SyncApi } from './sync-client.ts';

/**
 * Registers the app's service worker (/sw.js, scope /: every page of the app, so one reached by a client-side route is controlled too), which answers file URLs
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
  navigator.serviceWorker.register('/sw.js', { scope: '/', type: 'module' }).catch((error: unknown) => {
    console.warn('nearsync: the service worker for file URLs did not register:', error);
  });
}

/** Whether file URLs work in this page right now (the service worker controls it). */
export function fileUrlsReady(): boolean {
  return 'serviceWorker' in navigator && navigator.serviceWorker.controller !== null;
}

const RELOADED_KEY = 'nearsync:file-url-reloaded';

/**
 * The app itself was served at a file URL: the service worker did not answer it (this is the
 * browser's first visit, so it was not installed yet, or a hard reload bypassed it). Once it
 * controls the origin, one reload lets it answer; if it still does not, say why.
 */
export async function fileUrlWithoutServiceWorker(): Promise<Page> {
  const target = (() => {
    try {
      return parseFileUrlPath(location.pathname);
    } catch {
      return null;
    }
  })();
  if ('serviceWorker' in navigator && sessionStorage.getItem(RELOADED_KEY) !== location.pathname) {
    sessionStorage.setItem(RELOADED_KEY, location.pathname);
    const ready = await Promise.race([navigator.serviceWorker.ready.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 10_000))]);
    if (ready) {
      location.reload();
      return loadingPage('Opening the file…');
    }
  }
  sessionStorage.removeItem(RELOADED_KEY);
  const workspace = target ? `/w/${target.ns}` : '/';
  return messagePage({
    title: 'This file could not be opened here',
    body: `File addresses are answered inside this browser, from a workspace it has joined, by the app's service worker${'serviceWorker' in navigator ? ', which did not start' : ', which this browser does not have'}. Open the workspace (${workspace}), then open the file from its list.`,
    testId: 'file-url-unavailable',
    tone: 'error',
  });
}
