import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Netns } from '../netns/netns.ts';
import { until } from './until.ts';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

export interface DaemonArgs {
  server: string;
  invite?: string;
  dir: string;
  state?: string;
  cacheOnly?: boolean;
  /** `--lan` with these ports (tcpPort 0: any free one) and, if given, `--lan-broadcast`. */
  lan?: { port: number; tcpPort?: number; broadcast?: string };
  /** Run inside this network namespace (through `ip netns exec`, which execs in place). */
  netns?: Netns;
  /** More environment (the daemon's NEARSYNC_* knobs). */
  env?: Record<string, string>;
  /** Flags for node itself, before the script (e.g. --cpu-prof, which NODE_OPTIONS refuses). */
  nodeArgs?: string[];
}

/** `node bin/nearsync.mjs peer …` as a child process, with its output collected. */
export class DaemonProcess {
  output = '';
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  constructor(args: DaemonArgs) {
    const argv = [...(args.nodeArgs ?? []), 'bin/nearsync.mjs', 'peer', '--server', args.server, '--dir', args.dir];
    if (args.invite) argv.push('--invite', args.invite);
    if (args.state) argv.push('--state', args.state);
    if (args.cacheOnly) argv.push('--cache-only');
    if (args.lan) {
      // LAN broadcast leaves the machine unless it is confined to a network namespace the test made.
      if (!args.netns) throw new Error('a --lan daemon in a test must run inside the test\'s network namespace (netns)');
      argv.push('--lan', '--port', String(args.lan.port));
      if (args.lan.tcpPort !== undefined) argv.push('--tcp-port', String(args.lan.tcpPort));
      if (args.lan.broadcast) argv.push('--lan-broadcast', args.lan.broadcast);
    }
    const options: SpawnOptions = {
      cwd: REPO,
      // Short long polls and rescans keep tests quick; the watcher still does the real work.
      env: { ...process.env, NEARSYNC_LONG_POLL_SECONDS: '2', NEARSYNC_RESCAN_MS: '1000', NEARSYNC_DEBOUNCE_MS: '100', ...args.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    };
    this.child = args.netns ? args.netns.spawn(process.execPath, argv, options) : spawn(process.execPath, argv, options);
    this.child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** The daemon's process id (inside a namespace: `ip netns exec` execs in place, so the same process). */
  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<void> {
    await until(() => pattern.test(this.output), timeoutMs, `daemon output ${pattern}`).catch((error: Error) => {
      throw new Error(`${error.message}\n--- daemon output ---\n${this.output}`);
    });
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM and wait; SIGKILL if it does not stop in time. */
  async stop(): Promise<number | null> {
    if (!this.running) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), 10_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** Every daemon a test file starts, so afterEach can stop them whatever happened. */
export class DaemonPool {
  private readonly daemons: DaemonProcess[] = [];
  start(args: DaemonArgs): DaemonProcess {
    const daemon = new DaemonProcess(args);
    this.daemons.push(daemon);
    return daemon;
  }
  async stopAll(): Promise<void> {
    await Promise.all(this.daemons.splice(0).map((daemon) => daemon.stop()));
  }
}

/**
 * A UDP discovery port for one test's daemons: random, so concurrent tests do not hear each
 * other, and below Linux's ephemeral range (32768–60999). A daemon's advertiser sends from an
 * ephemeral port without SO_REUSEADDR; a listener port drawn from that range collided with one
 * (EADDRINUSE) in CI.
 */
export function lanTestUdpPort(): number {
  return 20_000 + Math.floor(Math.random() * 12_000);
}
