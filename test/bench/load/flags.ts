/**
 * Command-line flags of `npm run bench:load` (every count has a default sized for a 2-core
 * machine; the whole run takes a few minutes):
 *
 *   --scenario idle,fanout,commits   which scenarios (default: all)
 *   --engines sqlite,postgres        metadata engines (default: both; PostgreSQL rows need
 *                                    --database-url to answer; two-instance rows need both
 *                                    PostgreSQL and Redis)
 *   --instances 1,2                  single-instance and/or two-instance rows (default: both)
 *   --polls N          idle: concurrent journal long polls (default 10000)
 *   --sockets N        idle and fanout: relay sockets (default 2000)
 *   --namespaces N     workspaces the polls and sockets are spread over (default 100)
 *   --advert-rate N    fanout steady: adverts sent per second, all senders together (default 200)
 *   --committers LIST  commits: concurrent committers per level (default 1,10,50)
 *   --commit-namespaces N  workspaces the committers commit to, round robin (default 10)
 *   --readers N        concurrent journal page readers (default 10)
 *   --page N           entries per journal page read (default 200)
 *   --seconds N        length of each timed measurement (default 5)
 *   --generators N     load-generator processes (default 2)
 *   --open-rate N      long polls opened per second (default 2000)
 *   --database-url URL PostgreSQL to make a schema in (default postgres://postgres@127.0.0.1:5432/test)
 *   --redis-url URL    Redis shared by two instances (default redis://127.0.0.1:6379)
 */

export const LOAD_SCENARIOS = ['idle', 'fanout', 'commits'] as const;
export type LoadScenario = (typeof LOAD_SCENARIOS)[number];
export const ENGINES = ['sqlite', 'postgres'] as const;
export type Engine = (typeof ENGINES)[number];

export interface LoadFlags {
  scenarios: LoadScenario[];
  engines: Engine[];
  instances: number[];
  polls: number;
  sockets: number;
  namespaces: number;
  advertRate: number;
  committers: number[];
  commitNamespaces: number;
  readers: number;
  page: number;
  seconds: number;
  generators: number;
  openRate: number;
  databaseUrl: string;
  redisUrl: string;
}

type IntegerFlag = 'polls' | 'sockets' | 'namespaces' | 'advertRate' | 'commitNamespaces' | 'readers' | 'page' | 'generators' | 'openRate';
const INTEGER_FLAGS: Record<string, IntegerFlag> = {
  polls: 'polls',
  sockets: 'sockets',
  namespaces: 'namespaces',
  'advert-rate': 'advertRate',
  'commit-namespaces': 'commitNamespaces',
  readers: 'readers',
  page: 'page',
  generators: 'generators',
  'open-rate': 'openRate',
};

export function parseLoadFlags(argv: string[]): LoadFlags {
  const flags: LoadFlags = {
    scenarios: [...LOAD_SCENARIOS],
    engines: [...ENGINES],
    instances: [1, 2],
    polls: 10_000,
    sockets: 2_000,
    namespaces: 100,
    advertRate: 200,
    committers: [1, 10, 50],
    commitNamespaces: 10,
    readers: 10,
    page: 200,
    seconds: 5,
    generators: 2,
    openRate: 2_000,
    databaseUrl: process.env.BENCH_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test',
    redisUrl: process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const inline = /^--([a-z-]+)=(.*)$/.exec(arg);
    const name = inline ? inline[1] : /^--([a-z-]+)$/.exec(arg)?.[1];
    if (!name) throw new Error(`unexpected argument ${JSON.stringify(arg)} (flags look like --polls 1000)`);
    const value = inline ? inline[2] : argv[++i];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    if (name in INTEGER_FLAGS) {
      flags[INTEGER_FLAGS[name]] = positiveInteger(name, value);
    } else if (name === 'seconds') {
      const seconds = Number(value);
      if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600) throw new Error(`--seconds needs a number in (0, 600], not ${JSON.stringify(value)}`);
      flags.seconds = seconds;
    } else if (name === 'scenario' || name === 'scenarios') {
      flags.scenarios = pickList(name, value, LOAD_SCENARIOS);
    } else if (name === 'engines' || name === 'engine') {
      flags.engines = pickList(name, value, ENGINES);
    } else if (name === 'instances') {
      const counts = list(value).map((part) => positiveInteger(name, part));
      if (counts.length === 0 || counts.some((n) => n > 2)) throw new Error('--instances takes 1, 2 or 1,2');
      flags.instances = [...new Set(counts)].sort();
    } else if (name === 'committers') {
      const levels = list(value).map((part) => positiveInteger(name, part));
      if (levels.length === 0) throw new Error('--committers takes a list like 1,10,50');
      flags.committers = levels;
    } else if (name === 'database-url') {
      if (!/^postgres(ql)?:\/\//.test(value)) throw new Error('--database-url must be a postgres:// URL');
      flags.databaseUrl = value;
    } else if (name === 'redis-url') {
      if (!/^redis:\/\//.test(value)) throw new Error('--redis-url must be a redis:// URL');
      flags.redisUrl = value;
    } else {
      throw new Error(`unknown flag --${name}`);
    }
  }
  return flags;
}

function list(value: string): string[] {
  return value.split(',').map((part) => part.trim()).filter(Boolean);
}

function pickList<T extends string>(name: string, value: string, allowed: readonly T[]): T[] {
  const names = list(value);
  const unknown = names.filter((part) => !(allowed as readonly string[]).includes(part));
  if (names.length === 0 || unknown.length > 0) {
    throw new Error(`--${name} takes a comma-separated list of ${allowed.join(', ')}; unknown: ${unknown.join(', ') || '(empty)'}`);
  }
  // Canonical order, whatever order they were given in.
  return allowed.filter((item) => names.includes(item));
}

function positiveInteger(name: string, value: string): number {
  const number = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(number) || number <= 0) throw new Error(`--${name} needs a positive whole number, not ${JSON.stringify(value)}`);
  return number;
}
