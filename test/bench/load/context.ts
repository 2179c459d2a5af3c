import type { Deployment } from './deployment.ts';
import type { LoadFlags } from './flags.ts';
import type { GeneratorPool } from './generator-pool.ts';
import { toMiB } from './stats.ts';

/** What every scenario gets: the servers under test, the load generators, the flags. */
export interface ScenarioContext {
  deployment: Deployment;
  pool: GeneratorPool;
  flags: LoadFlags;
  log(message: string): void;
}

/** Longest any one phase (opening polls, connecting sockets, a measurement's drain) may take. */
export const PHASE_TIMEOUT_MS = 120_000;

/** Server RSS summed over the instances, after a GC in each so garbage does not count. */
export async function serverRssAfterGc(deployment: Deployment): Promise<{ bytes: number; each: string }> {
  await Promise.all(deployment.servers.map((server) => server.read({ reset: false, gc: true })));
  const each = deployment.servers.map((server) => server.rss());
  return { bytes: each.reduce((a, b) => a + b, 0), each: each.map((bytes) => toMiB(bytes).toFixed(1)).join('+') };
}

/** Common leading columns of every row. */
export function rowHead(scenario: string, ctx: ScenarioContext): { scenario: string; engine: string; instances: number } {
  return { scenario, engine: ctx.deployment.engine, instances: ctx.deployment.servers.length };
}
