import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rssBytes } from './proc.ts';
import { withTimeout } from './timeouts.ts';

const REPO_ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const PROBE = fileURLToPath(new URL('./server-probe.ts', import.meta.url));
const START_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;
/** Settings a developer's shell may carry that must not leak into a bench server. */
const SERVER_ENV = ['PORT', 'HOST', 'DATA_DIR', 'DATABASE_URL', 'REDIS_URL', 'BLOCK_STORE', 'PUBLIC_URL', 'EGRESS_MBPS', 'TLS_CERT', 'TLS_KEY', 'LOG_LEVEL'];

export interface ServerEngines {
  /** postgres://…?schema=… ; unset: SQLite in the temp data dir. */
  databaseUrl?: string;
  /** redis://… ; unset: the relay in process. */
  redisUrl?: string;
}

export interface ServerReading {
  eventLoop: { p50Ms: number; p99Ms: number; maxMs: number };
  heapUsedBytes: number;
  rssBytes: number;
}

/**
 * One `src/server/main.ts` as a child process (run by tsx, no build), on loopback with a
 * free port and its own temp data dir, so the bench can read its RSS and CPU from /proc and
 * kill it cleanly. A preloaded probe (server-probe.ts) reports event-loop delay over IPC.
 */
export class ServerProcess {
  private output = '';
  private exited: Promise<void>;
  private exitCode: number | null = null;

  private constructor(
    private readonly child: ChildProcess,
    readonly dataDir: string,
    readonly name: string,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      this.exitCode = code ?? (signal ? 128 : 1);
      resolve();
    }));
    const keep = (chunk: Buffer) => {
      // Only the tail is kept, for error messages: a server logging warnings must not grow us.
      this.output = (this.output + chunk.toString('utf8')).slice(-8_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  url = '';

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitCode === null;
  }

  /** `root`: the checkout whose src/server/main.ts runs (default this one; the block-batch bench compares checkouts). */
  static async start(name: string, engines: ServerEngines, root = REPO_ROOT): Promise<ServerProcess> {
    const dataDir = await mkdtemp(join(tmpdir(), 'nearsync-load-'));
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const key of SERVER_ENV) delete env[key];
    Object.assign(env, { PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn' });
    if (engines.databaseUrl) env.DATABASE_URL = engines.databaseUrl;
    if (engines.redisUrl) env.REDIS_URL = engines.redisUrl;
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', '--import', PROBE, 'src/server/main.ts'], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const server = new ServerProcess(child, dataDir, name);
    try {
      server.url = await withTimeout(server.listening(), START_TIMEOUT_MS, `server ${name} to start`);
    } catch (err) {
      await server.stop();
      throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- server output (tail) ---\n${server.recentOutput}`);
    }
    return server;
  }

  private listening(): Promise<string> {
    return new Promise((resolve, reject) => {
      const onData = () => {
        const url = /nearsync listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(this.output)?.[1];
        if (url) {
          this.child.stdout?.off('data', onData);
          resolve(url);
        }
      };
      this.child.stdout?.on('data', onData);
      this.exited.then(() => reject(new Error(`server ${this.name} exited with ${this.exitCode} before listening`)));
    });
  }

  rss(): number {
    const bytes = rssBytes(this.pid);
    if (bytes === null) throw new Error(`server ${this.name} is gone\n${this.recentOutput}`);
    return bytes;
  }

  /** Event-loop delay since the last reset, heap and RSS (after a GC when `gc`). */
  read(options: { reset: boolean; gc: boolean }): Promise<ServerReading> {
    return withTimeout(
      new Promise<ServerReading>((resolve) => {
        const onMessage = (message: unknown) => {
          if (typeof message !== 'object' || message === null || (message as { probe?: unknown }).probe !== 'reading') return;
          this.child.off('message', onMessage);
          resolve(message as ServerReading);
        };
        this.child.on('message', onMessage);
        this.child.send({ probe: 'read', ...options });
      }),
      10_000,
      `a probe reading from server ${this.name}`,
    );
  }

  /** The last lines the server printed, each cut short (a stack may quote a whole bundled module), for failures. */
  get recentOutput(): string {
    return this.output
      .split('\n')
      .slice(-15)
      .map((line) => (line.length > 240 ? `${line.slice(0, 240)}…` : line))
      .join('\n');
  }

  /** SIGTERM, then SIGKILL after a grace period; removes the data dir. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.running) {
      this.child.kill('SIGTERM');
      const stopped = await Promise.race([this.exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)]);
      if (!stopped) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    await rm(this.dataDir, { recursive: true, force: true });
  }

  /** For exit handlers, which cannot wait. */
  killNow(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
