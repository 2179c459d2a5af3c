import type { BenchRow } from '../report.ts';
import { PHASE_TIMEOUT_MS, rowHead, type ScenarioContext } from './context.ts';
import { createWorkspaces, credentials } from './fixtures.ts';
import type { AdvertPlan, AdvertsResult, SocketsOpened, SocketTarget } from './generator-protocol.ts';
import { splitEvenly } from './generator-pool.ts';
import { Measurement } from './measurement.ts';
import { percentile, round } from './stats.ts';

const MEMBERS_PER_NAMESPACE = 20;
const SOCKET_HANDSHAKES_PER_GENERATOR = 50;
/** How long deliveries may trail the last send before they count as lost. */
const DRAIN_MS = 15_000;
/** Time for the adverts sent on connecting (cursor 0) to settle before measuring. */
const SETTLE_MS = 1_000;
/** Per sending socket, under the relay's limit of 50 events a second. */
const MAX_ADVERTS_PER_SENDER_PER_SECOND = 20;

/**
 * Advert fan-out: `sockets` relay sockets in namespaces of 20, all sockets of a namespace in
 * one generator so each advert's send and its deliveries are timed on one clock. A steady
 * stream (`advertRate` a second) and a burst (every sender once, at once), each advert with
 * a new cursor so the relay broadcasts it. With two instances the members of each namespace
 * alternate between them and only sockets on instance 0 send: instance 1's members receive
 * through Redis.
 */
export async function benchFanout(ctx: ScenarioContext): Promise<BenchRow[]> {
  const { deployment, pool, flags, log } = ctx;
  const urls = deployment.urls;
  const namespaceCount = Math.max(1, Math.floor(flags.sockets / MEMBERS_PER_NAMESPACE));
  const members = await createWorkspaces(urls[0], namespaceCount);
  // Whole namespaces per generator: senders and receivers of an advert share a clock.
  const namespaceParts = splitEvenly(members, pool.size);
  const targets: SocketTarget[][] = namespaceParts.map((part) =>
    part.flatMap((member) =>
      Array.from({ length: MEMBERS_PER_NAMESPACE }, (_, j) => ({ ...credentials(urls[j % urls.length], member), instance: j % urls.length })),
    ),
  );
  const total = targets.reduce((n, part) => n + part.length, 0);
  log(`fanout ${deployment.engine} x${urls.length}: ${total} sockets in ${namespaceCount} namespaces of ${MEMBERS_PER_NAMESPACE}`);
  try {
    const opened = await pool.all<SocketsOpened>(
      (g) => ({ cmd: 'sockets.open', targets: targets[g], concurrency: SOCKET_HANDSHAKES_PER_GENERATOR, timeoutMs: PHASE_TIMEOUT_MS - 10_000 }),
      PHASE_TIMEOUT_MS,
    );
    const connected = opened.reduce((n, o) => n + o.connected, 0);
    if (connected < total) log(`  ${total - connected} sockets failed to connect: ${opened.flatMap((o) => o.errorSamples).join('; ')}`);
    if (connected < 2) throw new Error('fewer than two sockets connected');
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));

    const senderInstance = urls.length > 1 ? 0 : null;
    // The relay disconnects a socket over 50 events a second: keep every sender well below.
    const senders = Math.ceil(connected / urls.length);
    const advertRate = Math.min(flags.advertRate, senders * MAX_ADVERTS_PER_SENDER_PER_SECOND);
    if (advertRate < flags.advertRate) log(`  --advert-rate ${flags.advertRate} would push senders past the relay's rate limit: ${advertRate}/s`);
    const rows: BenchRow[] = [];
    const plans: Array<[string, AdvertPlan]> = [
      ['fanout-steady', { mode: 'steady', ratePerSecond: advertRate / pool.size, durationMs: flags.seconds * 1000, drainMs: DRAIN_MS, senderInstance }],
      ['fanout-burst', { mode: 'burst', ratePerSecond: 0, durationMs: 0, drainMs: DRAIN_MS, senderInstance }],
    ];
    for (const [scenario, plan] of plans) {
      const measurement = await Measurement.open(deployment, pool);
      const results = await pool.all<AdvertsResult>(() => ({ cmd: 'adverts.run', plan }), plan.durationMs + plan.drainMs + PHASE_TIMEOUT_MS);
      const usage = await measurement.close();
      const sum = (pick: (r: AdvertsResult) => number) => results.reduce((n, r) => n + pick(r), 0);
      const latencies = results.flatMap((r) => r.latenciesMs);
      const cross = results.flatMap((r) => r.crossLatenciesMs);
      const spanSeconds = Math.max(...results.map((r) => r.spanMs)) / 1000;
      const row: BenchRow = {
        ...rowHead(scenario, ctx),
        sockets: connected,
        namespaces: namespaceCount,
        advertsSent: sum((r) => r.sent),
        deliveriesExpected: sum((r) => r.expected),
        delivered: sum((r) => r.delivered),
        deliveredPerSec: spanSeconds > 0 ? round(sum((r) => r.delivered) / spanSeconds) : null,
        p50Ms: round(percentile(latencies, 50) ?? NaN, 2),
        p99Ms: round(percentile(latencies, 99) ?? NaN, 2),
        crossP50Ms: cross.length ? round(percentile(cross, 50)!, 2) : null,
        crossP99Ms: cross.length ? round(percentile(cross, 99)!, 2) : null,
        malformed: sum((r) => r.malformed),
        serverCpuPct: usage.serverCpuPct,
        redisCpuPct: usage.redisCpuPct,
        serverLoopP99Ms: usage.serverLoopP99Ms,
        clientCpuPct: usage.clientMaxCpuPct,
        otherCpuPct: usage.otherCpuPct,
        bound: usage.bound,
      };
      log(`  ${scenario}: ${row.delivered}/${row.deliveriesExpected} delivered, ${row.deliveredPerSec}/s, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms`);
      rows.push(row);
    }
    return rows;
  } finally {
    await pool.all(() => ({ cmd: 'sockets.close' }), 30_000).catch(() => []);
  }
}
