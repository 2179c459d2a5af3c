import type { BenchRow } from '../report.ts';
import { PHASE_TIMEOUT_MS, rowHead, serverRssAfterGc, type ScenarioContext } from './context.ts';
import { commitToEach, createWorkspaces, credentials, serverMetrics, uploadSmallBlock } from './fixtures.ts';
import type { PollsStarted, PollsStopped, PollsWoken, PollTarget, SocketsOpened, SocketTarget } from './generator-protocol.ts';
import { splitEvenly } from './generator-pool.ts';
import { Measurement } from './measurement.ts';
import { percentile, round, toMiB } from './stats.ts';
import { pollUntil } from './timeouts.ts';

/** Longest wait a long poll may ask for (protocol limit): polls stay open through the whole scenario. */
const POLL_WAIT_SECONDS = 60;
/** How long (at most: --seconds when shorter) all polls are held idle while the server's CPU is read. */
const HOLD_MS = 3_000;
const SOCKET_HANDSHAKES_PER_GENERATOR = 50;

/**
 * Idle capacity: `sockets` relay sockets (each has sent an advert), then `polls` journal
 * long polls on top, held open; server RSS at baseline, with the sockets, with both. Then one
 * commit per namespace wakes every poll (across instances when there are two).
 */
export async function benchIdle(ctx: ScenarioContext): Promise<BenchRow> {
  const { deployment, pool, flags, log } = ctx;
  const urls = deployment.urls;
  const members = await createWorkspaces(urls[0], flags.namespaces);
  const block = await uploadSmallBlock(urls, members[0]);
  // Each namespace's polls and sockets are spread over every instance, so a commit on one must wake polls on the other.
  const instanceOf = (i: number) => Math.floor(i / members.length) % urls.length;
  const pollTargets: PollTarget[] = Array.from({ length: flags.polls }, (_, i) => ({
    ...credentials(urls[instanceOf(i)], members[i % members.length]),
    cursor: 0,
  }));
  const socketTargets: SocketTarget[] = Array.from({ length: flags.sockets }, (_, i) => ({
    ...credentials(urls[instanceOf(i)], members[i % members.length]),
    instance: instanceOf(i),
  }));

  const baseline = await serverRssAfterGc(deployment);
  log(`idle ${deployment.engine} x${urls.length}: baseline RSS ${baseline.each} MiB; connecting ${flags.sockets} relay sockets`);
  try {
    // Sockets first: they stay as they are however long the polls take to open, while a
    // poll answers (and polls again) after 60 s, so the polls are opened last and woken at once.
    const connecting = await Measurement.open(deployment, pool);
    const socketParts = splitEvenly(socketTargets, pool.size);
    const opened = await pool.all<SocketsOpened>(
      (g) => ({ cmd: 'sockets.open', targets: socketParts[g], concurrency: SOCKET_HANDSHAKES_PER_GENERATOR, timeoutMs: PHASE_TIMEOUT_MS - 10_000 }),
      PHASE_TIMEOUT_MS,
    );
    const connected = opened.reduce((n, o) => n + o.connected, 0);
    const failures = opened.flatMap((o) => o.errorSamples);
    if (connected < flags.sockets) log(`  ${flags.sockets - connected} sockets failed to connect: ${failures.join('; ')}`);
    if (connected === 0) throw new Error(`no relay socket connected: ${failures.join('; ')}`);
    await pollUntil(
      async () => ((await openCount(urls, 'relaySockets')) >= connected ? true : undefined),
      PHASE_TIMEOUT_MS,
      `${connected} relay sockets on the server`,
    );
    const connectUsage = await connecting.close();
    const withSockets = await serverRssAfterGc(deployment);
    log(`  ${connected} sockets in ${connectUsage.seconds} s; RSS ${withSockets.each} MiB; opening ${flags.polls} long polls`);

    // A busy machine opens polls slowly (each is a read and a poll, several queries each): allow 10 ms a poll on top.
    const openTimeoutMs = PHASE_TIMEOUT_MS + flags.polls * 10;
    const opening = await Measurement.open(deployment, pool);
    const pollParts = splitEvenly(pollTargets, pool.size);
    await pool.all<PollsStarted>(
      (g) => ({ cmd: 'polls.start', targets: pollParts[g], waitSeconds: POLL_WAIT_SECONDS, openPerSecond: flags.openRate / pool.size }),
      openTimeoutMs,
    );
    // 99 %: when opening outlasts the 60 s wait, a few polls are always between an answer and the next poll.
    await pollUntil(
      async () => ((await openCount(urls, 'journalLongPollsOpen')) >= Math.ceil(flags.polls * 0.99) ? true : undefined),
      openTimeoutMs,
      `${flags.polls} long polls to be waiting on the server`,
    );
    const openUsage = await opening.close();
    const holding = await Measurement.open(deployment, pool);
    await new Promise((resolve) => setTimeout(resolve, Math.min(HOLD_MS, flags.seconds * 1000)));
    const holdUsage = await holding.close();
    const withAll = await serverRssAfterGc(deployment);
    const pollsOpen = await openCount(urls, 'journalLongPollsOpen');
    if (openUsage.seconds > POLL_WAIT_SECONDS - 10) log(`  opening took over ${POLL_WAIT_SECONDS - 10} s: the first polls have been answered and re-polled meanwhile`);
    log(`  ${flags.polls} polls open in ${openUsage.seconds} s (open now: ${pollsOpen}); RSS ${withAll.each} MiB; waking every poll`);

    const waking = await Measurement.open(deployment, pool);
    const wakeStartedAt = Date.now();
    await commitToEach(urls, members, block);
    const commitsDoneMs = Date.now() - wakeStartedAt;
    const woken = await pool.all<PollsWoken>(() => ({ cmd: 'polls.woken', timeoutMs: 30_000 }), PHASE_TIMEOUT_MS);
    const wakeUsage = await waking.close();
    log(`  wake: commits answered in ${commitsDoneMs} ms; server CPU ${wakeUsage.serverCpuPct} %, loop p99 ${wakeUsage.serverLoopP99Ms} ms`);
    const wokenCount = woken.reduce((n, w) => n + w.woken, 0);
    const wakeMs = woken.flatMap((w) => w.wokenAt.map((at) => at - wakeStartedAt));
    const stopped = await pool.all<PollsStopped>(() => ({ cmd: 'polls.stop' }), 30_000);
    const pollErrors = stopped.reduce((n, s) => n + s.errors, 0);
    if (pollErrors > 0) log(`  long-poll errors: ${pollErrors} (${stopped.flatMap((s) => s.errorSamples).join('; ')})`);

    return {
      ...rowHead('idle', ctx),
      sockets: connected,
      polls: flags.polls,
      rssBaseMiB: toMiB(baseline.bytes),
      rssSocketsMiB: toMiB(withSockets.bytes),
      rssAllMiB: toMiB(withAll.bytes),
      rssEachMiB: withAll.each,
      mibPer1kSockets: round(toMiB(withSockets.bytes - baseline.bytes) / (connected / 1000), 2),
      mibPer1kPolls: round(toMiB(withAll.bytes - withSockets.bytes) / (flags.polls / 1000), 2),
      sockOpenPerSec: round(connected / connectUsage.seconds),
      sockOpenCpuPct: connectUsage.serverCpuPct,
      pollOpenPerSec: round(flags.polls / openUsage.seconds),
      pollOpenCpuPct: openUsage.serverCpuPct,
      pollOpenDbCpuPct: openUsage.dbCpuPct,
      holdCpuPct: holdUsage.serverCpuPct,
      woken: wokenCount,
      wakeP50Ms: percentile(wakeMs, 50),
      wakeAllMs: wokenCount === flags.polls ? Math.max(...wakeMs) : null,
      wakeCpuPct: wakeUsage.serverCpuPct,
      wakeDbCpuPct: wakeUsage.dbCpuPct,
      pollErrors,
      serverLoopP99Ms: Math.max(openUsage.serverLoopP99Ms, connectUsage.serverLoopP99Ms, wakeUsage.serverLoopP99Ms),
      clientCpuPct: Math.max(openUsage.clientMaxCpuPct, connectUsage.clientMaxCpuPct, wakeUsage.clientMaxCpuPct),
      otherCpuPct: Math.max(openUsage.otherCpuPct, connectUsage.otherCpuPct, wakeUsage.otherCpuPct),
      bound: `sockets: ${connectUsage.bound}; polls: ${openUsage.bound}; wake: ${wakeUsage.bound}`,
    };
  } finally {
    // Stopping twice is harmless: this is for the paths that failed before the stop above.
    await pool.all(() => ({ cmd: 'polls.stop' }), 30_000).catch(() => []);
    await pool.all(() => ({ cmd: 'sockets.close' }), 30_000).catch(() => []);
  }
}

async function openCount(urls: string[], counter: 'journalLongPollsOpen' | 'relaySockets'): Promise<number> {
  const metrics = await Promise.all(urls.map((url) => serverMetrics(url)));
  return metrics.reduce((n, m) => n + m[counter], 0);
}
