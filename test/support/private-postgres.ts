import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A PostgreSQL cluster of the test's own: initdb in a temp dir, listening on a free loopback
 * port (TCP only on 127.0.0.1, its Unix socket inside the temp dir), trust auth for user
 * `postgres`. Tests stop and start it to play an outage without touching the shared server.
 * As root every command runs as the `postgres` OS user (`runuser -u postgres --`), because
 * initdb and postgres refuse to run as root.
 */
export interface PrivatePostgres {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** The temp dir holding data/, the socket and postgres.log. */
  readonly directory: string;
  /** postgres://postgres@127.0.0.1:<port>/<database>[?schema=…] */
  url(options?: { database?: string; schema?: string }): string;
  readonly running: boolean;
  /** Stops the server: 'fast' ends sessions cleanly (admin shutdown), 'immediate' is a crash. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same port with the same data. */
  start(): Promise<void>;
  /** Stops it if running and removes the temp dir. */
  destroy(): Promise<void>;
}

export interface PrivatePostgresOptions {
  /** Extra server settings (`-c name=value`), e.g. { max_connections: '50' }. */
  settings?: Record<string, string>;
}

/** The newest installed server binaries (Debian layout), or NEARSYNC_PG_BIN. */
export async function postgresBinDir(): Promise<string> {
  if (process.env.NEARSYNC_PG_BIN) return process.env.NEARSYNC_PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? (await readdir(root)).filter((v) => /^[0-9]+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const version of versions) {
    const bin = join(root, version, 'bin');
    if (existsSync(join(bin, 'initdb'))) return bin;
  }
  throw new Error(`no PostgreSQL server binaries under ${root}; install postgresql or set NEARSYNC_PG_BIN`);
}

export async function startPrivatePostgres(options: PrivatePostgresOptions = {}): Promise<PrivatePostgres> {
  const bin = await postgresBinDir();
  const asRoot = process.getuid?.() === 0;
  const directory = await mkdtemp(join(tmpdir(), 'nearsync-pg-'));
  const dataDir = join(directory, 'data');
  const logFile = join(directory, 'postgres.log');
  /** Runs a server binary, as the postgres OS user when we are root. */
  const pgCommand = async (tool: string, args: string[]) => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]] : [join(bin, tool), args];
    try {
      await run(file, argv, { timeout: 60_000 });
    } catch (err) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      throw new Error(`${tool} ${args.join(' ')} failed: ${(err as Error).message}\n${log.split('\n').slice(-20).join('\n')}`);
    }
  };

  let port = 0;
  let running = false;
  const serverOptions = () =>
    [
      `-c listen_addresses=127.0.0.1`,
      `-p ${port}`,
      `-k ${directory}`,
      // Throwaway data: no fsync (only a machine crash would lose data). Commits still reach
      // the OS before they are acknowledged, so an 'immediate' stop (a server crash) keeps them.
      '-c fsync=off',
      ...Object.entries(options.settings ?? {}).map(([name, value]) => `-c ${name}=${value}`),
    ].join(' ');
  const start = async () => {
    await pgCommand('pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', '60', '-o', serverOptions(), 'start']);
    running = true;
  };

  try {
    if (asRoot) await chown(directory, ...(await postgresIds()));
    await pgCommand('initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
    // Another process may take the free port before the server binds it: try a few.
    for (let attempt = 1; ; attempt++) {
      port = await freeLoopbackPort();
      try {
        await start();
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  } catch (err) {
    await rm(directory, { recursive: true, force: true });
    throw err;
  }

  const stop = async (mode: 'fast' | 'immediate' = 'fast') => {
    if (!running) return;
    await pgCommand('pg_ctl', ['-D', dataDir, '-m', mode, '-w', '-t', '60', 'stop']);
    running = false;
  };
  return {
    host: '127.0.0.1',
    get port() {
      return port;
    },
    directory,
    url: ({ database = 'postgres', schema } = {}) => `postgres://postgres@127.0.0.1:${port}/${database}${schema ? `?schema=${schema}` : ''}`,
    get running() {
      return running;
    },
    stop,
    start: async () => {
      if (!running) await start();
    },
    async destroy() {
      try {
        await stop('immediate');
      } finally {
        await rm(directory, { recursive: true, force: true });
      }
    },
  };
}

async function postgresIds(): Promise<[number, number]> {
  const { stdout } = await run('id', ['-u', 'postgres']);
  const { stdout: group } = await run('id', ['-g', 'postgres']);
  return [Number(stdout.trim()), Number(group.trim())];
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
