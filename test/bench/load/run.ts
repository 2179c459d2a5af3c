import { printTable, type BenchRow } from '../report.ts';
import type { ScenarioContext } from './context.ts';
import { Deployment, type DeploymentSpec } from './deployment.ts';
import { postgresReachable, redisReachable, sharedRedis } from './engines.ts';
import { parseLoadFlags, type LoadScenario } from './flags.ts';
import { GeneratorPool } from './generator-pool.ts';
import { printGlossary } from './glossary.ts';
import { benchCommits } from './commits.ts';
import { benchFanout } from './fanout.ts';
import { benchIdle } from './idle.ts';
import { fitToFileLimit } from './limits.ts';
import { Teardown } from './teardown.ts';
import { withTimeout } from './timeouts.ts';

/**
 * `npm run bench:load [-- --polls 10000 --sockets 2000 --seconds 5 …]` (flags.ts).
 *
 * Load on real server processes over loopback: idle capacity (long polls and relay sockets
 * held open, RSS), advert fan-out through the relay, commits and journal page reads per
 * second; SQLite on one instance, PostgreSQL on one, and PostgreSQL + Redis on two. Servers
 * and load generators are separate child processes, so each one's CPU is read on its own
 * from /proc, next to the database's and Redis's, to say what bounds each figure. Figures
 * are reported, never asserted. Progress goes to stderr; stdout gets one JSON object per
 * measurement, then tables and a column glossary.
 */

const flags = parseLoadFlags(process.argv.slice(2));
const SCENARIO_TIMEOUT_MS = 300_000 + flags.seconds * 10_000;
const began = performance.now();
const log = (message: string) => process.stderr.write(`[bench:load ${((performance.now() - began) / 1000).toFixed(0).padStart(4)} s] ${message}\n`);
const rows: BenchRow[] = [];
const failures: string[] = [];
const teardown = new Teardown(log);

// Interrupted: undo what was made (servers, generators, schema, keys), then leave.
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: tearing down`);
    teardown.runAll().finally(() => process.exit(130));
  });
}
process.on('exit', () => teardown.killAllNow());

async function attempt(name: string, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    failures.push(name);
    log(`${name} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  }
}

interface Plan {
  spec: DeploymentSpec;
  scenarios: LoadScenario[];
}

/** Which deployments run which scenarios: commits compare the engines on one instance; idle and fan-out compare one instance with two. */
function plans(): Plan[] {
  const wanted = (list: LoadScenario[]) => list.filter((s) => flags.scenarios.includes(s));
  const all: Plan[] = [];
  if (flags.instances.includes(1) && flags.engines.includes('sqlite')) {
    all.push({ spec: { metadata: 'sqlite', instances: 1, redis: false }, scenarios: wanted(['idle', 'fanout', 'commits']) });
  }
  if (flags.instances.includes(1) && flags.engines.includes('postgres')) {
    all.push({ spec: { metadata: 'postgres', instances: 1, redis: false }, scenarios: wanted(['commits']) });
  }
  if (flags.instances.includes(2) && flags.engines.includes('postgres')) {
    all.push({ spec: { metadata: 'postgres', instances: 2, redis: true }, scenarios: wanted(['idle', 'fanout']) });
  }
  return all.filter((plan) => plan.scenarios.length > 0);
}

async function runPlan(plan: Plan, pool: GeneratorPool): Promise<void> {
  const name = `${plan.spec.metadata}${plan.spec.redis ? '+redis' : ''} x${plan.spec.instances}`;
  if (plan.spec.metadata === 'postgres') {
    const reason = await postgresReachable(flags.databaseUrl);
    if (reason) throw new Error(`PostgreSQL at ${flags.databaseUrl} does not answer (${reason}); give --database-url or --engines sqlite`);
  }
  if (plan.spec.redis) {
    const reason = await redisReachable(flags.redisUrl);
    if (reason) throw new Error(`Redis at ${flags.redisUrl} does not answer (${reason}); give --redis-url or --instances 1`);
  }
  // The deployment's own teardown steps run when it is done, before the next one starts.
  const scoped = teardown.scope(name);
  try {
    const deployment = await Deployment.start(plan.spec, { databaseUrl: flags.databaseUrl, redis: () => sharedRedis(flags.redisUrl) }, scoped, log);
    const ctx: ScenarioContext = { deployment, pool, flags, log };
    const run = { idle: async () => [await benchIdle(ctx)], fanout: () => benchFanout(ctx), commits: () => benchCommits(ctx) };
    for (const scenario of plan.scenarios) {
      if (interrupted) break;
      // Every phase inside has its own timeout; this one also bounds the HTTP set-up calls.
      await attempt(`${scenario} on ${name}`, async () => void rows.push(...(await withTimeout(run[scenario](), SCENARIO_TIMEOUT_MS, `${scenario} on ${name}`))));
    }
  } finally {
    await scoped.runAll();
  }
}

async function main(): Promise<void> {
  const lowered = fitToFileLimit(flags);
  if (lowered) log(lowered);
  const pool = await GeneratorPool.start(flags.generators);
  teardown.add('load generators', () => pool.stop(), () => pool.killNow());
  log(`${pool.size} load generators up (pids ${pool.pids.join(', ')})`);
  for (const plan of plans()) {
    if (interrupted) break;
    await attempt(`${plan.spec.metadata} x${plan.spec.instances}`, () => runPlan(plan, pool));
  }
}

try {
  await main();
} catch (error) {
  failures.push('setup');
  log(`setup failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
} finally {
  await teardown.runAll();
}

for (const row of rows) console.log(JSON.stringify(row));
const scenarios = [...new Set(rows.map((row) => row.scenario))];
for (const scenario of scenarios) printTable(rows.filter((row) => row.scenario === scenario));
printGlossary(scenarios.map(String));
log(`done in ${((performance.now() - began) / 1000).toFixed(0)} s${failures.length ? `; failed: ${failures.join(', ')}` : ''}`);
process.exitCode = failures.length > 0 ? 1 : 0;
