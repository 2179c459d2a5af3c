import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { build } from 'vite';
import type { ServerMetrics } from '../../src/protocol/index.ts';
import { startServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';

/**
 * End-to-end environment: the app built once with the repo's Vite config into a temp dir,
 * real servers on loopback serving it, and one Chromium whose contexts stand for separate
 * browsers (each context has its own IndexedDB). Everything started here is registered for
 * teardown, which `close()` runs in reverse order even when a test failed half way.
 */

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CHROMIUM_PATH = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--disable-dev-shm-usage',
];

export interface TestServer {
  /** http://localhost:<port>: localhost is a secure context, so WebCrypto and Web Locks exist. */
  origin: string;
  metrics(): Promise<ServerMetrics>;
}

export class E2eHarness {
  private readonly cleanups: (() => Promise<void>)[] = [];

  private constructor(
    readonly browser: Browser,
    readonly staticDir: string,
  ) {}

  /** Builds the app and launches Chromium. On failure, whatever was started is torn down. */
  static async start(): Promise<E2eHarness> {
    const cleanups: (() => Promise<void>)[] = [];
    try {
      const staticDir = await makeTempDir('nearsync-e2e-dist-', cleanups);
      await buildApp(staticDir);
      const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
      cleanups.push(() => browser.close());
      const harness = new E2eHarness(browser, staticDir);
      harness.cleanups.push(...cleanups);
      return harness;
    } catch (error) {
      await runCleanups(cleanups);
      throw error;
    }
  }

  async startServer(options: { egressBytesPerSecond?: number } = {}): Promise<TestServer> {
    const dataDir = await makeTempDir('nearsync-e2e-data-', this.cleanups);
    const server = await startServer({
      host: '127.0.0.1',
      port: 0,
      dataDir,
      staticDir: this.staticDir,
      logger: silentLogger,
      ...(options.egressBytesPerSecond ? { egressBytesPerSecond: options.egressBytesPerSecond } : {}),
    });
    this.cleanups.push(() => server.close());
    const origin = `http://localhost:${server.port}`;
    return {
      origin,
      async metrics() {
        const response = await fetch(`${origin}/api/v1/metrics`);
        if (!response.ok) throw new Error(`GET /api/v1/metrics answered ${response.status}`);
        return (await response.json()) as ServerMetrics;
      },
    };
  }

  /** Another Chromium with extra flags (e.g. host resolver rules), torn down with the rest. */
  async launchExtraBrowser(extraArgs: string[]): Promise<Browser> {
    const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: [...CHROMIUM_ARGS, ...extraArgs] });
    this.cleanups.push(() => browser.close());
    return browser;
  }

  /**
   * A Chromium with an on-disk profile, as a user's browser has: IndexedDB and blobs live
   * on disk there (a `newBrowser()` context is off the record, and keeps them in memory).
   * Torn down with the rest, profile directory included.
   */
  async newProfileBrowser(extraArgs: string[] = []): Promise<BrowserContext> {
    const profileDir = await makeTempDir('nearsync-e2e-profile-', this.cleanups);
    const context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM_PATH,
      args: [...CHROMIUM_ARGS, ...extraArgs],
      acceptDownloads: true,
    });
    this.cleanups.push(() => context.close());
    return context;
  }

  /** A separate "browser": its own storage, so its own IndexedDB and Web Locks. */
  async newBrowser(): Promise<BrowserContext> {
    const context = await this.browser.newContext({ acceptDownloads: true });
    this.cleanups.push(() => context.close());
    return context;
  }

  /** Writes `bytes` to a fresh temp file (big files go to file inputs by path, not through the protocol). */
  async writeTempFile(name: string, bytes: Uint8Array): Promise<string> {
    const dir = await makeTempDir('nearsync-e2e-files-', this.cleanups);
    const path = join(dir, name);
    await writeFile(path, bytes);
    return path;
  }

  /** Writes files under a fresh `<temp>/<name>/` folder and returns that folder's path. */
  async writeTempTree(name: string, files: Record<string, Uint8Array>): Promise<string> {
    const root = join(await makeTempDir('nearsync-e2e-tree-', this.cleanups), name);
    for (const [relativePath, bytes] of Object.entries(files)) {
      const path = join(root, relativePath);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, bytes);
    }
    return root;
  }

  async close(): Promise<void> {
    await runCleanups(this.cleanups);
  }
}

export async function buildApp(outDir: string): Promise<void> {
  await build({
    root: REPO_ROOT,
    configFile: join(REPO_ROOT, 'vite.config.ts'),
    logLevel: 'warn',
    // A temp outDir keeps `npm test` from racing a developer's build into dist/.
    // NEARSYNC_BUILD_UNMINIFIED=1 keeps function names readable in CPU profiles (bench --profile).
    build: { outDir, emptyOutDir: true, sourcemap: false, ...(process.env.NEARSYNC_BUILD_UNMINIFIED ? { minify: false } : {}) },
  });
}

export async function makeTempDir(prefix: string, cleanups: (() => Promise<void>)[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function runCleanups(cleanups: (() => Promise<void>)[]): Promise<void> {
  const failures: unknown[] = [];
  while (cleanups.length > 0) {
    const cleanup = cleanups.pop()!;
    try {
      await cleanup();
    } catch (error) {
      failures.push(error);
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, 'e2e teardown failed');
}

export function randomBuffer(size: number): Buffer {
  return randomBytes(size);
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
