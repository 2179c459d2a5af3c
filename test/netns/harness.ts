import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname } from 'node:path';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import type { ServerMetrics } from '../../src/protocol/index.ts';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import { buildApp, CHROMIUM_ARGS, CHROMIUM_PATH, makeTempDir, runCleanups, type TestServer } from '../e2e/harness.ts';
import { cleanStaleNamespaces, createNamespace, startTcpForwarder, writeNamespaceWrapper, type Netns } from './netns.ts';

/**
 * End-to-end environment for real WebRTC between Chromium instances.
 *
 * One network namespace with a veth pair to the host (see netns.ts). Every Chromium runs
 * inside it (launched through a generated `ip netns exec` wrapper), so it gathers an ICE
 * host candidate on the namespace's veth address; two Chromium processes in the namespace
 * connect to each other over that address.
 *
 * Servers stay in the test process: they listen on the host end of the veth, and a TCP
 * forwarder inside the namespace maps 127.0.0.1:<same port> to them. Pages therefore open
 * http://localhost:<port> (a secure context: WebCrypto, Web Locks, service workers) and the
 * test reads server state in-process.
 *
 * Everything started is torn down by close(), in reverse order, even after a failure.
 */

/** Chromium flags for WebRTC in the namespace, on top of the e2e harness's standard flags. */
export const WEBRTC_CHROMIUM_ARGS = ['--disable-features=WebRtcHideLocalIpsWithMdns'];

export interface NetnsTestServer extends TestServer {
  /** http://localhost:<port>: what pages inside the namespace open (through the forwarder). */
  origin: string;
  /** http://<host veth address>:<port>: the same server as the test process reaches it. */
  hostUrl: string;
  /** The in-process server: `server.metrics()` is synchronous and exact. */
  server: RunningServer;
  metrics(): Promise<ServerMetrics>;
}

export interface ExposedHttpServer {
  /** http://localhost:<port>, for pages in the namespace. */
  origin: string;
  /** http://<host veth address>:<port>, for the test process (and, directly, for pages too). */
  hostUrl: string;
  port: number;
  /** The Node server, e.g. to attach a socket.io server to. */
  server: Server;
}

export interface NetnsHarnessOptions {
  /** Build the web app with Vite (needed for startServer() to serve it). Default true. */
  buildApp?: boolean;
}

type ExtraServerOptions = Omit<ServerOptions, 'host' | 'port' | 'dataDir' | 'staticDir'>;

export class NetnsHarness {
  private readonly cleanups: (() => Promise<void>)[] = [];
  private sharedBrowser: Promise<Browser> | null = null;

  private constructor(
    readonly ns: Netns,
    /** Executable that runs Chromium inside the namespace; pass as playwright's executablePath. */
    readonly chromiumPath: string,
    readonly staticDir: string | null,
  ) {}

  /** Removes stale namespaces of dead runs, creates the namespace, builds the app (unless told not to). */
  static async start(options: NetnsHarnessOptions = {}): Promise<NetnsHarness> {
    const cleanups: (() => Promise<void>)[] = [];
    try {
      await cleanStaleNamespaces();
      const ns = await createNamespace();
      cleanups.push(() => ns.close());
      const scriptDir = await makeTempDir('nearsync-netns-bin-', cleanups);
      const chromiumPath = await writeNamespaceWrapper(ns, scriptDir, CHROMIUM_PATH);
      let staticDir: string | null = null;
      if (options.buildApp ?? true) {
        staticDir = await makeTempDir('nearsync-netns-dist-', cleanups);
        await buildApp(staticDir);
      }
      const harness = new NetnsHarness(ns, chromiumPath, staticDir);
      harness.cleanups.push(...cleanups);
      return harness;
    } catch (error) {
      await runCleanups(cleanups);
      throw error;
    }
  }

  /** Starts the nearsync server in this process, reachable in the namespace at http://localhost:<port>. */
  async startServer(options: ExtraServerOptions = {}): Promise<NetnsTestServer> {
    const dataDir = await makeTempDir('nearsync-netns-data-', this.cleanups);
    const server = await startServer({
      logger: silentLogger,
      ...options,
      host: this.ns.hostAddress,
      port: 0,
      dataDir,
      staticDir: this.staticDir,
    });
    this.cleanups.push(() => server.close());
    const { origin, hostUrl } = await this.exposePort(server.port);
    return { origin, hostUrl, server, metrics: async () => server.metrics() };
  }

  /** Serves any request listener from this process, reachable in the namespace at http://localhost:<port>. */
  async startHttpServer(listener: RequestListener): Promise<ExposedHttpServer> {
    const server = createServer(listener);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.ns.hostAddress, port: 0 }, () => resolve());
    });
    this.cleanups.push(() => closeHttpServer(server));
    const port = (server.address() as AddressInfo).port;
    return { ...(await this.exposePort(port)), port, server };
  }

  /**
   * Serves fixed files: `routes` maps URL paths (e.g. '/index.html') to file paths. GET and
   * HEAD only; anything else is 404. For test pages that need no app build.
   */
  async serveFiles(routes: Record<string, string>): Promise<ExposedHttpServer> {
    return this.startHttpServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      const file = Object.hasOwn(routes, path) ? routes[path] : undefined;
      if (path === '/favicon.ico' && !file) {
        res.writeHead(204).end();
        return;
      }
      if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      stat(file).then(
        (info) => {
          res.writeHead(200, {
            'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
            'content-length': info.size,
            'cache-control': 'no-store',
          });
          if (req.method === 'HEAD') res.end();
          else createReadStream(file).on('error', () => res.destroy()).pipe(res);
        },
        () => res.writeHead(404).end(),
      );
    });
  }

  /** Makes a port of the host end of the veth reachable inside the namespace at 127.0.0.1:<port>. */
  async exposePort(port: number): Promise<{ origin: string; hostUrl: string }> {
    const forwarder = await startTcpForwarder(this.ns, { listenPort: port, targetHost: this.ns.hostAddress });
    this.cleanups.push(() => forwarder.close());
    return { origin: `http://localhost:${port}`, hostUrl: `http://${this.ns.hostAddress}:${port}` };
  }

  /**
   * A separate "browser" (own storage, so own IndexedDB and Web Locks) as a context of one
   * shared Chromium process in the namespace, launched on first use.
   */
  async newBrowser(): Promise<BrowserContext> {
    if (!this.sharedBrowser) {
      this.sharedBrowser = this.launchSeparateBrowser();
      this.sharedBrowser.catch(() => (this.sharedBrowser = null));
    }
    const context = await (await this.sharedBrowser).newContext({ acceptDownloads: true });
    this.cleanups.push(() => context.close());
    return context;
  }

  /** Another Chromium process in the namespace: the realistic case for WebRTC between two machines. */
  async launchSeparateBrowser(extraArgs: string[] = []): Promise<Browser> {
    const browser = await chromium.launch({
      executablePath: this.chromiumPath,
      args: mergeFeatureFlags([...CHROMIUM_ARGS, ...WEBRTC_CHROMIUM_ARGS, ...extraArgs]),
    });
    this.cleanups.push(() => browser.close());
    return browser;
  }

  /**
   * A Chromium process in the namespace with an on-disk profile, as a user's browser has
   * (a context of `launchSeparateBrowser` is off the record: its IndexedDB and origin
   * private files live in memory, so it cannot hold files of several GiB).
   */
  async newProfileBrowser(extraArgs: string[] = []): Promise<BrowserContext> {
    const profileDir = await makeTempDir('nearsync-netns-profile-', this.cleanups);
    const context = await chromium.launchPersistentContext(profileDir, {
      executablePath: this.chromiumPath,
      args: mergeFeatureFlags([...CHROMIUM_ARGS, ...WEBRTC_CHROMIUM_ARGS, ...extraArgs]),
      acceptDownloads: true,
    });
    this.cleanups.push(() => context.close());
    return context;
  }

  async close(): Promise<void> {
    await runCleanups(this.cleanups);
  }
}

/**
 * Chromium honours only the last --disable-features= (and --enable-features=) switch, so
 * lists given by a caller are merged into one switch with ours instead of replacing it.
 */
export function mergeFeatureFlags(args: string[]): string[] {
  const lists = new Map<string, string[]>();
  const rest: string[] = [];
  for (const arg of args) {
    const match = /^(--(?:disable|enable)-features)=(.*)$/.exec(arg);
    if (!match) {
      rest.push(arg);
      continue;
    }
    const list = lists.get(match[1]) ?? [];
    for (const feature of match[2].split(',')) if (feature && !list.includes(feature)) list.push(feature);
    lists.set(match[1], list);
  }
  return [...rest, ...[...lists].map(([flag, list]) => `${flag}=${list.join(',')}`)];
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

async function closeHttpServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
