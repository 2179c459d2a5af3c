import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A redis-server of a test's own, on a free loopback port, that keeps nothing on disk. Tests
 * that stop or restart Redis use one of these instead of the shared 127.0.0.1:6379, so they
 * never disturb another test run.
 */
export interface PrivateRedis {
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** Whether a redis-server process is running now. */
  readonly running: boolean;
  /** Kills the process with SIGKILL (a crash: no shutdown, nothing saved) and waits for it to exit. */
  kill(): Promise<void>;
  /** Starts redis-server again on the same port (it comes back empty) and waits until it accepts connections. */
  start(): Promise<void>;
  /** Kills the process if it runs and removes its working directory. */
  stop(): Promise<void>;
}

const READY_LINE = /Ready to accept connections/;
const START_TIMEOUT_MS = 10_000;
const PORT_ATTEMPTS = 5;

export async function startPrivateRedis(): Promise<PrivateRedis> {
  // redis-server would write dump files into its working directory if asked to save: give it its own.
  const dir = await mkdtemp(join(tmpdir(), 'nearsync-redis-'));
  let port = 0;
  let child: ChildProcess | null = null;
  // Another process may take the free port between our probe and redis-server's bind: try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freeLoopbackPort();
    try {
      child = await launch(port, dir);
      break;
    } catch (err) {
      if (attempt >= PORT_ATTEMPTS) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get running() {
      return child !== null;
    },
    async kill() {
      if (!child) return;
      await killAndWait(child);
      child = null;
    },
    async start() {
      if (child) throw new Error(`private redis on port ${port} is already running`);
      child = await launch(port, dir);
    },
    async stop() {
      if (child) await killAndWait(child);
      child = null;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A port nothing listens on right now: bind port 0 on loopback, read it, release it. */
function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen({ host: '127.0.0.1', port: 0 }, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => (port ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

/** Spawns redis-server and resolves once it logs that it accepts connections. */
function launch(port: number, dir: string): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let output = '';
    // The tail of the server's output, for the error message when it does not start.
    const append = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000));
    const fail = (reason: string) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`redis-server on 127.0.0.1:${port} did not start: ${reason}\n${output}`));
    };
    const timer = setTimeout(() => fail(`not ready after ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      append(chunk);
      if (!READY_LINE.test(output)) return;
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      // Keep draining its output so a chatty server never blocks on a full pipe.
      child.stdout?.resume();
      child.off('exit', onExit);
      resolve(child);
    };
    const onExit = (code: number | null, signal: string | null) => fail(`exited (code ${code}, signal ${signal})`);
    child.stdout?.on('data', onData);
    child.stderr?.on('data', append);
    child.once('exit', onExit);
    child.once('error', (err) => fail(err.message));
  });
}

function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}
