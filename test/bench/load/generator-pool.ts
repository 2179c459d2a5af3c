import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { GeneratorCommand, GeneratorReply, GeneratorStats } from './generator-protocol.ts';
import { withTimeout } from './timeouts.ts';

const GENERATOR = fileURLToPath(new URL('./generator.ts', import.meta.url));

type CommandBody = GeneratorCommand extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

/** One forked load generator: commands out, replies in, matched by id. */
class Generator {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(err: Error): void }>();
  private exited = false;

  constructor(
    readonly index: number,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (message: unknown) => {
      const reply = message as GeneratorReply;
      const waiter = typeof reply?.id === 'number' ? this.pending.get(reply.id) : undefined;
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (reply.ok) waiter.resolve(reply.result);
      else waiter.reject(new Error(`generator ${index}: ${reply.error}`));
    });
    // A send to a generator that just exited fails through send()'s callback; nothing else may throw.
    child.on('error', () => {});
    child.once('exit', (code, signal) => {
      this.exited = true;
      for (const waiter of this.pending.values()) waiter.reject(new Error(`generator ${index} exited (${code ?? signal})`));
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  send<T>(body: CommandBody, timeoutMs: number): Promise<T> {
    if (this.exited || !this.child.connected) return Promise.reject(new Error(`generator ${this.index} has exited`));
    const id = this.nextId++;
    const reply = new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
    });
    this.child.send({ ...body, id }, (err) => {
      if (!err) return;
      this.pending.get(id)?.reject(new Error(`generator ${this.index}: ${err.message}`));
      this.pending.delete(id);
    });
    return withTimeout(reply, timeoutMs, `generator ${this.index} to answer ${body.cmd}`).finally(() => this.pending.delete(id));
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    // Disconnecting is the generator's signal to close its connections and exit.
    if (this.child.connected) this.child.disconnect();
    const done = await Promise.race([gone.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5_000))]);
    if (!done) {
      this.child.kill('SIGKILL');
      await gone;
    }
  }

  killNow(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

/**
 * Load-generator processes (generator.ts), several so one event loop is not the bottleneck.
 * Work is split between them by the scenarios; `all` sends one command each and gathers.
 */
export class GeneratorPool {
  private constructor(readonly generators: Generator[]) {}

  static async start(count: number): Promise<GeneratorPool> {
    const generators = Array.from({ length: count }, (_, index) => {
      const child = fork(GENERATOR, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 2, 2, 'ipc'] });
      return new Generator(index, child);
    });
    const pool = new GeneratorPool(generators);
    try {
      await pool.all(() => ({ cmd: 'stats', reset: true }), 30_000);
    } catch (err) {
      await pool.stop();
      throw err;
    }
    return pool;
  }

  get size(): number {
    return this.generators.length;
  }

  get pids(): number[] {
    return this.generators.map((g) => g.pid);
  }

  /** Sends each generator the command built for it and waits for every answer. */
  all<T>(build: (index: number) => CommandBody | null, timeoutMs: number): Promise<T[]> {
    return Promise.all(
      this.generators.flatMap((generator) => {
        const body = build(generator.index);
        return body ? [generator.send<T>(body, timeoutMs)] : [];
      }),
    );
  }

  /** Resets CPU and event-loop counters of every generator (start of a measurement window). */
  async resetStats(): Promise<void> {
    await this.all(() => ({ cmd: 'stats', reset: true }), 10_000);
  }

  /** CPU (summed, percent of one core) and the worst event-loop delay since the last reset. */
  async readStats(): Promise<{ cpuPercent: number; maxCpuPercent: number; eventLoopP99Ms: number }> {
    const stats = await this.all<GeneratorStats>(() => ({ cmd: 'stats', reset: true }), 10_000);
    return {
      cpuPercent: stats.reduce((sum, s) => sum + s.cpuPercent, 0),
      maxCpuPercent: Math.max(...stats.map((s) => s.cpuPercent)),
      eventLoopP99Ms: Math.max(...stats.map((s) => s.eventLoopP99Ms)),
    };
  }

  async stop(): Promise<void> {
    await Promise.all(this.generators.map((g) => g.stop()));
  }

  killNow(): void {
    for (const generator of this.generators) generator.killNow();
  }
}

/** Splits `items` into `parts` nearly equal runs, in order (part i gets the i-th run). */
export function splitEvenly<T>(items: T[], parts: number): T[][] {
  const runs: T[][] = [];
  let start = 0;
  for (let i = 0; i < parts; i++) {
    const end = start + Math.floor(items.length / parts) + (i < items.length % parts ? 1 : 0);
    runs.push(items.slice(start, end));
    start = end;
  }
  return runs;
}
