/** Short meanings of the table columns, printed under the tables (only for the scenarios shown). */
const COMMON: Record<string, string> = {
  engine: 'metadata engine (+redis: relay shared through Redis)',
  instances: 'server processes behind the load (2: load spread over both, one PostgreSQL schema, one Redis)',
  serverCpuPct: 'CPU of the busiest server process over the measurement, % of one core (from /proc/<pid>/stat)',
  dbCpuPct: "CPU of the PostgreSQL backends serving the instances, % of one core (SQLite runs inside the server's thread)",
  redisCpuPct: 'CPU of the redis-server the relay uses, % of one core (shared with anything else using it)',
  serverLoopP99Ms: 'event-loop delay p99 inside the busiest server (a probe preloaded into the bench servers)',
  clientCpuPct: 'CPU of the busiest load-generator process, % of one core',
  otherCpuPct: "the machine's CPU used by processes outside this bench (a shared machine), % of one core; when high, every figure is low",
  bound: "what limited the figure, read from the CPU columns: the first process at >= 85 % of a core (server, database, redis, generator), else the machine's two cores (with '(others)' when mostly taken by processes outside the bench), else 'not CPU': waiting on fsync (SQLite commits), database round trips and pool queues, or the offered load itself (a steady stream)",
};

const BY_SCENARIO: Record<string, Record<string, string>> = {
  idle: {
    polls: 'concurrent journal long polls (wait=60, re-polled when answered)',
    sockets: 'relay sockets connected (WebSocket), each in a namespace, each having sent an advert',
    'rssBase/Sockets/AllMiB': 'server RSS (VmRSS, summed over instances, after a GC) at baseline, with the sockets, with sockets and polls',
    rssEachMiB: 'RSS of each instance with sockets and polls',
    'mibPer1kSockets/Polls': 'RSS growth per 1,000 sockets / per 1,000 polls',
    'sockOpen/pollOpenPerSec': 'socket handshakes, and polls (a first read, then the poll; paced by --open-rate), completed per second',
    'sockOpen/pollOpen(Db)CpuPct': 'server (database) CPU while opening them',
    holdCpuPct: 'server CPU while holding everything idle',
    'wakeP50Ms/wakeAllMs': 'from one commit per namespace (all sent at once) to the median / the last poll answered with it (across instances with two)',
    'wake(Db)CpuPct': 'server (database) CPU during the wake',
  },
  'fanout-steady': {
    'sockets/namespaces': 'relay sockets connected, in namespaces of 20; all of a namespace in one generator (one clock for send and receive)',
    advertsSent: 'adverts sent, each with a new cursor (so the relay broadcasts it); steady: --advert-rate a second for --seconds; burst: every sender once, at once',
    'deliveriesExpected/delivered': 'advert receptions due (each advert to the other 19 members) and received within 15 s of the last send',
    deliveredPerSec: 'receptions per second, first send to last reception',
    'p50Ms/p99Ms': 'send to reception, every reception',
    'crossP50Ms/crossP99Ms': 'the same for receptions on the other instance than the sender (two instances: only instance 0 sends, relayed through Redis)',
  },
  commits: {
    concurrency: 'committers (commits) or readers (journal-reads) at once, each waiting for its answer before the next request',
    'ok/failed': 'requests answered 200 / otherwise, over --seconds',
    perSec: 'commits (one-block file, block already stored) or journal pages read, per second',
    'p50Ms/p99Ms': 'request latency as the generator saw it',
    entriesPerPage: 'journal entries per page read (--page)',
  },
};
BY_SCENARIO['fanout-burst'] = BY_SCENARIO['fanout-steady'];
BY_SCENARIO['journal-reads'] = BY_SCENARIO.commits;

export function printGlossary(scenarios: string[]): void {
  const entries: Array<[string, string]> = Object.entries(COMMON);
  const seen = new Set<string>();
  for (const scenario of scenarios) {
    for (const entry of Object.entries(BY_SCENARIO[scenario] ?? {})) {
      if (!seen.has(entry[0])) entries.push(entry);
      seen.add(entry[0]);
    }
  }
  if (scenarios.length === 0) return;
  const width = Math.max(...entries.map(([name]) => name.length));
  console.log('');
  for (const [name, meaning] of entries) console.log(`${name.padEnd(width)}  ${meaning}`);
}
