import type { Deployment } from './deployment.ts';
import type { GeneratorPool } from './generator-pool.ts';
import { CpuMeter, MachineCpuMeter } from './proc.ts';
import { round } from './stats.ts';

/** Where the time went during one measurement window; every figure is a percent of one core. */
export interface Usage {
  seconds: number;
  /** Busiest server instance. */
  serverCpuPct: number;
  /** PostgreSQL backends serving the instances (null: SQLite, which runs on the server's thread). */
  dbCpuPct: number | null;
  /** The redis-server the relay uses (null: no Redis). */
  redisCpuPct: number | null;
  /** Event-loop delay p99 of the busiest server instance (measured inside it). */
  serverLoopP99Ms: number;
  /** All load generators together, and the busiest one. */
  clientCpuPct: number;
  clientMaxCpuPct: number;
  clientLoopP99Ms: number;
  /** Every CPU user of the machine (from /proc/stat), to see a saturated 2-core box. */
  machineCpuPct: number;
  /** The machine's CPU not used by this bench's processes: other work on a shared machine. */
  otherCpuPct: number;
  bound: string;
}

/** Above this share of a core a single-threaded process is taken as the bottleneck. */
const SATURATED_PCT = 85;

/**
 * A measurement window: CPU of the servers, their database backends, Redis and the load
 * generators, and event-loop delay on both sides, from open() to close().
 */
export class Measurement {
  private constructor(
    private readonly deployment: Deployment,
    private readonly pool: GeneratorPool,
    private readonly servers: CpuMeter[],
    private readonly database: CpuMeter | null,
    private readonly redis: CpuMeter | null,
    private readonly machine: MachineCpuMeter,
    private readonly startedAt: number,
    private readonly ownCpuStart: NodeJS.CpuUsage,
  ) {}

  static async open(deployment: Deployment, pool: GeneratorPool): Promise<Measurement> {
    await Promise.all(deployment.servers.map((server) => server.read({ reset: true, gc: false })));
    await pool.resetStats();
    const database = deployment.spec.metadata === 'postgres' ? new CpuMeter(deployment.databasePids()) : null;
    const redis = deployment.spec.redis ? new CpuMeter(deployment.redisPids()) : null;
    return new Measurement(
      deployment,
      pool,
      deployment.servers.map((server) => new CpuMeter([server.pid])),
      database,
      redis,
      new MachineCpuMeter(),
      performance.now(),
      process.cpuUsage(),
    );
  }

  async close(): Promise<Usage> {
    const seconds = (performance.now() - this.startedAt) / 1000;
    const serverCpu = this.servers.map((meter) => meter.percent());
    const dbCpuPct = this.database ? this.database.percent(this.deployment.databasePids()) : null;
    const redisCpuPct = this.redis ? this.redis.percent(this.deployment.redisPids()) : null;
    const machineCpuPct = this.machine.percent();
    const own = process.cpuUsage(this.ownCpuStart);
    const benchCpuPct = ((own.user + own.system) / 1e6 / seconds) * 100;
    const readings = await Promise.all(this.deployment.servers.map((server) => server.read({ reset: true, gc: false })));
    const clients = await this.pool.readStats();
    const usage: Omit<Usage, 'bound'> = {
      seconds: round(seconds, 2),
      serverCpuPct: round(Math.max(...serverCpu)),
      dbCpuPct: dbCpuPct === null ? null : round(dbCpuPct),
      redisCpuPct: redisCpuPct === null ? null : round(redisCpuPct),
      serverLoopP99Ms: round(Math.max(...readings.map((r) => r.eventLoop.p99Ms))),
      clientCpuPct: round(clients.cpuPercent),
      clientMaxCpuPct: round(clients.maxCpuPercent),
      clientLoopP99Ms: round(clients.eventLoopP99Ms),
      machineCpuPct: round(machineCpuPct),
      otherCpuPct: round(
        Math.max(0, machineCpuPct - serverCpu.reduce((a, b) => a + b, 0) - (dbCpuPct ?? 0) - (redisCpuPct ?? 0) - clients.cpuPercent - benchCpuPct),
      ),
    };
    return { ...usage, bound: boundBy(usage, this.deployment.spec.metadata) };
  }
}

/**
 * What limited a window, read from the figures: the first single-threaded process at
 * saturation, else the machine's two cores, else nothing CPU-shaped (then the limit is
 * waiting: locks, fsync, the offered load itself).
 */
export function boundBy(usage: Omit<Usage, 'bound'>, metadata: string): string {
  if (usage.serverCpuPct >= SATURATED_PCT) return metadata === 'sqlite' ? 'server CPU (+SQLite)' : 'server CPU';
  if (usage.dbCpuPct !== null && usage.dbCpuPct >= SATURATED_PCT) return 'database CPU';
  if (usage.redisCpuPct !== null && usage.redisCpuPct >= SATURATED_PCT) return 'redis CPU';
  if (usage.clientMaxCpuPct >= SATURATED_PCT) return 'generator CPU';
  if (usage.machineCpuPct >= 2 * SATURATED_PCT) return usage.otherCpuPct >= SATURATED_PCT ? 'machine CPU (others)' : 'machine CPU';
  return 'not CPU';
}
