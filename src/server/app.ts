import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { ValidationError, parseIceServers, type IceServer, type ServerMetricsReport } from '../protocol/index.ts';
import { namespaceOfToken } from './auth.ts';
import type { Handler, RequestContext, ServerDeps } from './context.ts';
import { DEFAULT_BLOCK_GC } from './config.ts';
import { EgressLimiter } from './egress.ts';
import { BlockGc, type BlockGcSettings } from './gc/block-gc.ts';
import { GcGenerationWatch } from './gc/gc-generation.ts';
import type { GcPassResult } from './gc/block-collector.ts';
import { HttpError } from './http/errors.ts';
import { BodyAbortedError } from './http/read-body.ts';
import { sendError, setCommonHeaders } from './http/respond.ts';
import { Router } from './http/router.ts';
import { silentLogger, type Logger } from './log.ts';
import { Metrics } from './metrics.ts';
import { PrometheusExporter } from './prometheus.ts';
import { openBackends, type BackendConfig } from './backends/index.ts';
import type { JournalNotifier } from './notifier.ts';
import { LanBridge, type LanBridgeOptions } from './lan-bridge/lan-bridge.ts';
import { RelayServer, type RelayOptions } from './relay/relay-server.ts';
import { blockRoutes } from './routes/blocks.ts';
import { pieceRoutes } from './routes/pieces.ts';
import { PieceHashes } from './storage/piece-hashes.ts';
import { blockUploadBatchRoutes } from './routes/block-upload-batch.ts';
import { commitRoutes } from './routes/commit.ts';
import { configRoutes } from './routes/config.ts';
import { deletedRoutes } from './routes/deleted.ts';
import { historyRoutes } from './routes/history.ts';
import { journalRoutes } from './routes/journal.ts';
import { lanRoutes } from './routes/lan.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { workspaceRoutes } from './routes/workspaces.ts';
import { SharedReads } from './shared-reads.ts';
import { Slots } from './slots.ts';
import { serveStatic } from './static.ts';
import { StoreUnavailableError } from './storage/store-errors.ts';

export interface ServerOptions {
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Listen port; 0 (the default) picks a free one. */
  port?: number;
  /** Holds nearsync.db and blocks/ (those the back ends keep on disk). */
  dataDir: string;
  /** PostgreSQL, Redis, S3: which engines hold the state; default SQLite and block files in dataDir. */
  backends?: BackendConfig;
  /** The built web app to serve at /, or null/undefined for the API only. */
  staticDir?: string | null;
  /** Origin for share links, e.g. https://sync.example.com; default: from the Host header. */
  publicUrl?: string;
  /** Pace block downloads to this many bytes per second in total (a stand-in WAN link). */
  egressBytesPerSecond?: number;
  /** Serve HTTPS with this PEM certificate and key. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  logger?: Logger;
  /** Replaces the in-process long-poll notifier (e.g. Redis or PostgreSQL LISTEN). */
  notifier?: JournalNotifier;
  /** ICE servers handed to browsers by GET /api/v1/config; default none (host candidates, enough on a LAN). */
  iceServers?: IceServer[];
  /** socket.io relay at /socket.io: limits and advert expiry. */
  relay?: RelayOptions;
  /** Run the LAN bridge (LAN_BRIDGE=1): UDP adverts and TCP block links to LAN peers. Off (no socket opened) when unset. */
  lanBridge?: LanBridgeOptions | null;
  /**
   * Retention and block GC (HISTORY_DAYS, BLOCK_GC_GRACE_S, BLOCK_GC_INTERVAL_S); default 30
   * days, 1 h, 1 h. `intervalMs: 0` runs no timed pass (`collectBlocks()` still does).
   */
  blockGc?: BlockGcSettings;
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:40123 (no trailing slash). */
  url: string;
  port: number;
  metrics(): ServerMetricsReport;
  /**
   * Runs one block GC pass now, in this process (after one already running here); `busy`
   * when another instance's pass holds the pass lock. For tests and operators' scripts: there
   * is no HTTP route for it.
   */
  collectBlocks(): Promise<GcPassResult>;
  /** Stops accepting, answers open long polls, waits for requests in flight (bounded), closes the stores. */
  close(): Promise<void>;
}

/** How long close() waits for requests in flight before cutting connections. */
const CLOSE_GRACE_MS = 5_000;
/** After an error response, read at most this much of an unread request body before hanging up. */
const DRAIN_LIMIT_BYTES = 8 * 1024 * 1024;
/** Batch block uploads received into memory at once: 16 × 16 MiB = 256 MiB at most. */
const BLOCK_UPLOAD_BATCHES_IN_MEMORY = 16;
const DRAIN_LIMIT_MS = 5_000;
const HOST_HEADER = /^[A-Za-z0-9.\-:[\]]+$/;

export function buildRouter(): Router<Handler> {
  const router = new Router<Handler>();
  workspaceRoutes(router);
  journalRoutes(router);
  commitRoutes(router);
  historyRoutes(router);
  deletedRoutes(router);
  blockRoutes(router);
  blockUploadBatchRoutes(router);
  pieceRoutes(router);
  metricsRoutes(router);
  configRoutes(router);
  lanRoutes(router);
  return router;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const logger = options.logger ?? silentLogger;
  const dataDir = resolve(options.dataDir);
  const staticDir = options.staticDir ? resolve(options.staticDir) : null;
  const host = options.host ?? '127.0.0.1';
  const scheme = options.tls ? 'https' : 'http';
  const iceServers = parseIceServers(options.iceServers ?? [], 'iceServers');
  const backends = await openBackends(options.backends ?? {}, dataDir, logger);
  const { metadata, blocks } = backends;
  const metrics = new Metrics();
  const blockGc = new BlockGc({ metadata, blocks, metrics, logger }, options.blockGc ?? DEFAULT_BLOCK_GC);
  const prometheus = new PrometheusExporter(metrics, backends.engines, { lanBridge: Boolean(options.lanBridge) });
  const shutdown = new AbortController();
  let listenOrigin = '';
  const configuredOrigin = options.publicUrl?.replace(/\/+$/, '');

  const deps: ServerDeps = {
    metadata,
    blocks,
    pieceHashes: new PieceHashes(blocks),
    notifier: options.notifier ?? backends.notifier,
    historyMs: blockGc.settings.historyMs,
    gcGeneration: new GcGenerationWatch(blocks),
    journalReads: new SharedReads(),
    blockUploadBatches: new Slots(BLOCK_UPLOAD_BATCHES_IN_MEMORY),
    metrics,
    egress: options.egressBytesPerSecond ? new EgressLimiter(options.egressBytesPerSecond) : null,
    logger,
    shutdown: shutdown.signal,
    clientConfig: { iceServers },
    publicUrl(req) {
      if (configuredOrigin) return configuredOrigin;
      const hostHeader = req.headers.host;
      if (hostHeader && HOST_HEADER.test(hostHeader)) return `${scheme}://${hostHeader}`;
      return listenOrigin;
    },
  };
  const router = buildRouter();
  let inFlight = 0;
  let onIdle: (() => void) | null = null;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const started = performance.now();
    const gone = new AbortController();
    const ctx: RequestContext = {
      req,
      res,
      url: new URL('http://localhost/'),
      rawPath: '/',
      params: {},
      clientGone: gone.signal,
      stats: { bytesOut: 0 },
    };
    let route = '-';
    inFlight++;
    res.on('finish', () => {
      if (!req.complete) drainBounded(req);
    });
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
      inFlight--;
      if (inFlight === 0) onIdle?.();
      const ms = performance.now() - started;
      const status = res.writableFinished ? res.statusCode : 0;
      prometheus.observeRequest(req.method ?? 'GET', route, status, ms / 1000);
      logger.info('request', { method: req.method, route, status, ms: Math.round(ms * 10) / 10, bytes: ctx.stats.bytesOut });
    });
    setCommonHeaders(res);
    try {
      ctx.rawPath = requestPath(req.url ?? '');
      ctx.url = new URL(`http://localhost${ctx.rawPath}`);
      const pathname = ctx.url.pathname;
      if (pathname === '/api' || pathname.startsWith('/api/')) {
        const match = router.match(req.method ?? 'GET', pathname);
        if (!match) throw new HttpError(404, 'not_found', `no route for ${pathname}`);
        route = match.pattern;
        ctx.params = match.params;
        await match.handler(ctx, deps);
      } else if (pathname === '/metrics') {
        route = '/metrics';
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          throw new HttpError(405, 'method_not_allowed', 'use GET or HEAD', { headers: { Allow: 'GET, HEAD' } });
        }
        const { contentType, body } = await prometheus.render();
        res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
        ctx.stats.bytesOut = Buffer.byteLength(body);
      } else if (staticDir) {
        route = 'static';
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          throw new HttpError(405, 'method_not_allowed', 'use GET or HEAD', { headers: { Allow: 'GET, HEAD' } });
        }
        await serveStatic(ctx, staticDir);
      } else {
        throw new HttpError(404, 'not_found', `no route for ${pathname}`);
      }
    } catch (err) {
      respondToError(ctx, err, logger);
    }
  };

  let server: Server;
  let relay: RelayServer | null = null;
  let bridge: LanBridge | null = null;
  try {
    // Inside the try: a bad certificate or relay option must not leave the back ends open
    // (a Redis or PostgreSQL connection would keep the process alive).
    server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handle) : createHttpServer(handle);
    // Clients poll the journal back to back: keep idle connections a little longer than the default.
    server.keepAliveTimeout = 10_000;
    if (options.lanBridge) {
      bridge = new LanBridge(options.lanBridge, { metadata, logger, knownPieces: (hash) => deps.pieceHashes.known(hash) });
      await bridge.start();
      const started = bridge;
      metrics.lanBridgeFigures = () => started.metrics();
    }
    relay = new RelayServer(
      server,
      { namespaceOfToken: (token) => namespaceOfToken(metadata, token), metrics, logger, shared: backends.relay, bridge },
      options.relay,
    );
    await new Promise<void>((resolvePromise, reject) => {
      server.once('error', reject);
      server.listen({ host, port: options.port ?? 0 }, () => {
        server.off('error', reject);
        resolvePromise();
      });
    });
  } catch (err) {
    await bridge?.close();
    await relay?.close();
    await backends.close();
    throw err;
  }
  const startedRelay = relay;
  const startedBridge = bridge;
  const address = server.address() as AddressInfo;
  const urlHost = host === '0.0.0.0' || host === '::' ? 'localhost' : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  listenOrigin = `${scheme}://${urlHost}:${address.port}`;
  logger.info('listening', { url: listenOrigin, dataDir, staticDir, engines: backends.engines });
  blockGc.start();

  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      const closed = new Promise<void>((done) => server.close(() => done()));
      shutdown.abort();
      const gcClosed = blockGc.close();
      // The bridge first: browsers hear its LAN peers leave before their sockets close.
      const bridgeClosed = startedBridge?.close();
      const relayClosed = startedRelay.close();
      server.closeIdleConnections();
      if (inFlight > 0) {
        await new Promise<void>((done) => {
          const timer = setTimeout(done, CLOSE_GRACE_MS);
          onIdle = () => {
            clearTimeout(timer);
            done();
          };
        });
      }
      server.closeAllConnections();
      await relayClosed;
      await bridgeClosed;
      await closed;
      await gcClosed;
      await backends.close();
      logger.info('closed');
    })();
    return closing;
  };

  return { url: listenOrigin, port: address.port, metrics: () => metrics.snapshot(), collectBlocks: () => blockGc.runNow(), close };
}

function respondToError(ctx: RequestContext, err: unknown, logger: Logger): void {
  const { res } = ctx;
  if (err instanceof BodyAbortedError || res.headersSent || res.destroyed) {
    if (!(err instanceof BodyAbortedError) && !res.headersSent) logger.warn('request failed', { err });
    res.destroy();
    return;
  }
  if (err instanceof HttpError) {
    ctx.stats.bytesOut = sendError(res, err.status, err.code, err.message, err.options.extra, err.options.headers);
  } else if (err instanceof StoreUnavailableError) {
    logger.warn('back end unavailable', { engine: err.engine, err: err.message, url: ctx.url.pathname });
    ctx.stats.bytesOut = sendError(res, 503, 'unavailable', `${err.engine} is unavailable; retry shortly`, undefined, { 'Retry-After': '1' });
  } else if (err instanceof ValidationError) {
    ctx.stats.bytesOut = sendError(res, 400, 'invalid', err.message, { field: err.field });
  } else {
    logger.error('internal error', { err, url: ctx.url.pathname });
    ctx.stats.bytesOut = sendError(res, 500, 'internal', 'internal server error');
  }
}

/**
 * The origin-form part of a request target: `/path?query` as sent, or taken from an
 * absolute-form target (`http://host/path?query`, which servers must accept).
 */
function requestPath(target: string): string {
  if (target.startsWith('/')) return target;
  const absolute = /^https?:\/\/[^/?#]*(\/[^#]*)?$/i.exec(target);
  if (absolute) return absolute[1] ?? '/';
  throw new HttpError(400, 'bad_request', 'request target must be a path or an absolute http URL');
}

/** Reads and drops what is left of a request body after an early response, within bounds. */
function drainBounded(req: IncomingMessage): void {
  if (req.complete || req.destroyed) return;
  let bytes = 0;
  const timer = setTimeout(() => req.socket.destroy(), DRAIN_LIMIT_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > DRAIN_LIMIT_BYTES) req.socket.destroy();
  });
  req.once('end', () => clearTimeout(timer));
  req.once('close', () => clearTimeout(timer));
  req.resume();
}
