import type { BenchRow } from '../report.ts';
import { PHASE_TIMEOUT_MS, rowHead, type ScenarioContext } from './context.ts';
import { createWorkspaces, credentials, seedJournal, uploadSmallBlock } from './fixtures.ts';
import type { Credentials, RequestLoadResult } from './generator-protocol.ts';
import { splitEvenly } from './generator-pool.ts';
import { Measurement, type Usage } from './measurement.ts';
import { percentile, round } from './stats.ts';

/**
 * Commits per second with 1, 10 and 50 concurrent committers (one-block files whose block is
 * already stored), spread round robin over `commitNamespaces` workspaces; then journal page
 * reads per second (`readers` at once, pages of `page` entries). Run on each engine in the
 * same bench run, so the rows compare like with like.
 */
export async function benchCommits(ctx: ScenarioContext): Promise<BenchRow[]> {
  const { deployment, pool, flags, log } = ctx;
  const url = deployment.urls[0];
  const members = await createWorkspaces(url, flags.commitNamespaces);
  const block = await uploadSmallBlock([url], members[0]);
  const rows: BenchRow[] = [];
  for (const committers of flags.committers) {
    const creds: Credentials[] = Array.from({ length: committers }, (_, i) => credentials(url, members[i % members.length]));
    const parts = splitEvenly(creds, pool.size);
    const measurement = await Measurement.open(deployment, pool);
    const results = await pool.all<RequestLoadResult>(
      (g) => (parts[g].length ? { cmd: 'commits.run', committers: parts[g], block: { hash: block.hash, size: block.bytes.length }, durationMs: flags.seconds * 1000, label: `${committers}-${g}` } : null),
      flags.seconds * 1000 + PHASE_TIMEOUT_MS,
    );
    const usage = await measurement.close();
    const row: BenchRow = { ...rowHead('commits', ctx), concurrency: committers, ...requestFigures(results, usage) };
    log(`  commits ${deployment.engine} c=${committers}: ${row.perSec}/s, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms (${row.bound})`);
    rows.push(row);
  }

  const reader = members[0];
  await seedJournal(url, reader, block, flags.page);
  const readers = Array.from({ length: flags.readers }, () => credentials(url, reader));
  const parts = splitEvenly(readers, pool.size);
  const measurement = await Measurement.open(deployment, pool);
  const results = await pool.all<RequestLoadResult>(
    (g) => (parts[g].length ? { cmd: 'reads.run', readers: parts[g], limit: flags.page, durationMs: flags.seconds * 1000 } : null),
    flags.seconds * 1000 + PHASE_TIMEOUT_MS,
  );
  const usage = await measurement.close();
  const ok = results.reduce((n, r) => n + r.ok, 0);
  const row: BenchRow = {
    ...rowHead('journal-reads', ctx),
    concurrency: flags.readers,
    entriesPerPage: ok > 0 ? round(results.reduce((n, r) => n + r.entries, 0) / ok) : null,
    ...requestFigures(results, usage),
  };
  log(`  journal reads ${deployment.engine}: ${row.perSec} pages/s, p50 ${row.p50Ms} ms (${row.bound})`);
  rows.push(row);
  return rows;
}

function requestFigures(results: RequestLoadResult[], usage: Usage): BenchRow {
  const ok = results.reduce((n, r) => n + r.ok, 0);
  const failed = results.reduce((n, r) => n + r.failed, 0);
  const latencies = results.flatMap((r) => r.latenciesMs);
  const seconds = Math.max(...results.map((r) => r.elapsedMs)) / 1000;
  const samples = results.flatMap((r) => r.errorSamples);
  return {
    ok,
    failed,
    perSec: seconds > 0 ? round(ok / seconds) : null,
    p50Ms: latencies.length ? round(percentile(latencies, 50)!, 2) : null,
    p99Ms: latencies.length ? round(percentile(latencies, 99)!, 2) : null,
    serverCpuPct: usage.serverCpuPct,
    dbCpuPct: usage.dbCpuPct,
    serverLoopP99Ms: usage.serverLoopP99Ms,
    clientCpuPct: usage.clientMaxCpuPct,
    otherCpuPct: usage.otherCpuPct,
    bound: usage.bound,
    ...(samples.length ? { errors: samples.slice(0, 2).join('; ').slice(0, 200) } : {}),
  };
}
