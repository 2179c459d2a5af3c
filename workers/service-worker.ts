/// <reference lib="webworker" />
import { describeError, looksLikeFileUrlPath, looksLikeZipDownloadPath, parseFileUrlPath, servedTypeFor, type NamespaceId } from '../src/protocol/index.ts';
import { parseFileReadReply, type FileReadReply, type FileReadRequest } from './file-read-messages.ts';
import { serveFileReadFromServer } from './file-reads-from-server.ts';
import { contentDisposition } from './content-disposition.ts';
import { ZipDownloads, isZipDownloadAnnouncement } from './zip-downloads.ts';

/**
 * The app's service worker (built to /sw.js, scope /). Its one job: answer file URLs,
 * `/w/<ns>/file/<path>`, with the file's bytes and HTTP Range support, so a file opens (and a
 * video plays and seeks) before it is synced. It holds no blocks and no tokens: it asks an
 * open page of this app for a MessagePort to that page's sync worker, which maps the range to
 * blocks, fetches missing ones first and hands back pieces (file-reads.ts); with no page
 * open it reads from the server itself (file-reads-from-server.ts). Every other request goes
 * to the network untouched. Second job: answer a zip download the app started where the
 * browser has no save dialog (zip-downloads.ts).
 */
declare const self: ServiceWorkerGlobalScope;

/** How long a page may take to start answering before the request fails. */
const OPEN_TIMEOUT_MS = 30_000;
/** How long one piece may take (a block fetched from a slow source). */
const PIECE_TIMEOUT_MS = 120_000;

/**
 * Every response from a file URL: the origin holds every workspace's token, so a file must
 * never run script here. `sandbox` gives a document an opaque origin without scripts (no
 * IndexedDB, no localStorage), `nosniff` stops a browser from guessing a scriptable type.
 */
const SAFETY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': 'sandbox',
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
  'Referrer-Policy': 'no-referrer',
};

self.addEventListener('install', (event) => {
  // Requests that are not file URLs skip this worker altogether where the browser can route
  // them (Chromium's static routing): block downloads pay no service-worker hop.
  const withRoutes = event as ExtendableEvent & { addRoutes?: (rules: unknown) => Promise<void> };
  // Rules apply in order, the first that matches decides.
  const routed = withRoutes.addRoutes?.([
    { condition: { urlPattern: { pathname: '/w/*/file/*' } }, source: 'fetch-event' },
    { condition: { urlPattern: { pathname: '/w/*/zip/*' } }, source: 'fetch-event' },
    { condition: { urlPattern: { pathname: '/*' } }, source: 'network' },
  ]);
  event.waitUntil(Promise.resolve(routed).catch(() => {}).then(() => self.skipWaiting()));
});

// Take open pages at once, so a file URL works on the first visit too.
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

const zipDownloads = new ZipDownloads();

self.addEventListener('message', (event) => {
  if (isZipDownloadAnnouncement(event.data)) event.waitUntil(zipDownloads.announce(event.data, event.ports[0], event.ports[1]));
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin) return;
  if (looksLikeZipDownloadPath(url.pathname) && event.request.method === 'GET') {
    event.respondWith(zipDownloads.respond(url.pathname, SAFETY_HEADERS));
    return;
  }
  if (!looksLikeFileUrlPath(url.pathname)) return;
  if (event.request.method !== 'GET' && event.request.method !== 'HEAD') {
    event.respondWith(plain(405, `${event.request.method} is not allowed on a file URL: only GET and HEAD`, { Allow: 'GET, HEAD' }));
    return;
  }
  event.respondWith(answer(event.request, url, event.clientId));
});

async function answer(request: Request, url: URL, clientId: string): Promise<Response> {
  let target: { ns: NamespaceId; path: string };
  try {
    target = parseFileUrlPath(url.pathname);
  } catch (error) {
    return plain(400, `This is not a valid file address: ${describeError(error)}`);
  }
  const client = await pageFor(target.ns, clientId);
  const { port1, port2 } = new MessageChannel();
  // An open page reads through its sync worker (stored blocks, peers, one queue); without one
  // this worker reads from the server itself.
  if (client) client.postMessage({ type: 'nearsync:file-port' }, [port2]);
  else serveFileReadFromServer(port2, self.location.origin);
  const replies = new ReplyQueue(port1);
  send(port1, { type: 'open', ns: target.ns, path: target.path, range: request.headers.get('Range') });
  const head = await replies.next(OPEN_TIMEOUT_MS).catch((error: unknown) => ({ type: 'failed', message: describeError(error) }) as FileReadReply);
  if (head.type === 'refused') {
    replies.close();
    return plain(head.status, head.message, head.status === 416 && head.size !== undefined ? { 'Content-Range': `bytes */${head.size}` } : {});
  }
  if (head.type !== 'head') {
    replies.close();
    return plain(503, `The page did not answer for ${target.path}: ${head.type === 'failed' ? head.message : 'unexpected reply'}`);
  }
  const served = servedTypeFor(target.path);
  const name = target.path.slice(target.path.lastIndexOf('/') + 1);
  const headers: Record<string, string> = {
    ...SAFETY_HEADERS,
    'Content-Type': served.contentType,
    'Content-Length': String(head.end - head.start + 1),
    'Accept-Ranges': 'bytes',
    'Content-Disposition': contentDisposition(served.disposition, name),
    'X-Nearsync-Synced': head.synced ? '1' : '0',
  };
  if (head.status === 206) headers['Content-Range'] = `bytes ${head.start}-${head.end}/${head.size}`;
  if (request.method === 'HEAD' || head.end < head.start) {
    send(port1, { type: 'cancel' });
    replies.close();
    return new Response(null, { status: head.status, headers });
  }
  let expected = head.end - head.start + 1;
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        send(port1, { type: 'pull' });
        const reply = await replies.next(PIECE_TIMEOUT_MS).catch((error: unknown) => ({ type: 'failed', message: describeError(error) }) as FileReadReply);
        if (reply.type === 'piece') {
          const bytes = 'bytes' in reply ? reply.bytes : new Uint8Array(await reply.blob.arrayBuffer());
          if (bytes.length === 0 || bytes.length > expected) {
            replies.close();
            controller.error(new Error(`the page sent ${bytes.length} bytes where at most ${expected} were left`));
            return;
          }
          expected -= bytes.length;
          controller.enqueue(bytes);
          if (expected === 0) {
            send(port1, { type: 'cancel' });
            replies.close();
            controller.close();
          }
          return;
        }
        replies.close();
        controller.error(new Error(reply.type === 'failed' ? reply.message : `the file ended ${expected} bytes early`));
      },
      cancel() {
        send(port1, { type: 'cancel' });
        replies.close();
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { status: head.status, headers });
}

/**
 * The page to read from: one showing this workspace (its tab runs the workspace's sync, or
 * mirrors the tab that does), else any page of the app; the focused and visible first. The
 * requesting page itself when it is one (a video element in the app). Null: none is open.
 */
async function pageFor(ns: NamespaceId, clientId: string): Promise<Client | null> {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const appPages = windows.filter((client) => isAppPage(new URL(client.url).pathname));
  const score = (client: WindowClient) =>
    (client.id === clientId ? 8 : 0) + (new URL(client.url).pathname === `/w/${ns}` ? 4 : 0) + (client.focused ? 2 : 0) + (client.visibilityState === 'visible' ? 1 : 0);
  appPages.sort((a, b) => score(b) - score(a));
  return appPages[0] ?? null;
}

/** The app's own pages (its routes): other documents of the origin (a file, an API response) run no sync worker. */
function isAppPage(pathname: string): boolean {
  return pathname === '/' || pathname === '/index.html' || /^\/w\/[^/]+\/?$/.test(pathname);
}

function send(port: MessagePort, message: FileReadRequest): void {
  port.postMessage(message);
}

function plain(status: number, text: string, extra: Record<string, string> = {}): Response {
  return new Response(`${text}\n`, { status, headers: { ...SAFETY_HEADERS, 'Content-Type': 'text/plain;charset=utf-8', ...extra } });
}

/** Replies from the page, in order, each validated; anything malformed ends the read. */
class ReplyQueue {
  private queued: FileReadReply[] = [];
  private waiting: ((reply: FileReadReply) => void) | null = null;
  constructor(private readonly port: MessagePort) {
    port.onmessage = (event) => this.push(parseFileReadReply(event.data) ?? { type: 'failed', message: 'the page sent a malformed reply' });
  }
  private push(reply: FileReadReply): void {
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve(reply);
    } else this.queued.push(reply);
  }
  next(timeoutMs: number): Promise<FileReadReply> {
    const first = this.queued.shift();
    if (first) return Promise.resolve(first);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error(`no answer from the page within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.waiting = (reply) => {
        clearTimeout(timer);
        resolve(reply);
      };
    });
  }
  close(): void {
    this.port.onmessage = null;
    this.port.close();
  }
}
