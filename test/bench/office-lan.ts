import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerApi } from '../../src/engine/server-api.ts';
import type { LanBridgeMetrics } from '../../src/protocol/index.ts';
import { DaemonPool, lanTestUdpPort } from '../support/lan-daemon.ts';
import {
  FILES,
  meanOf,
  mib,
  officeRow,
  reportDuplicates,
  reportErrors,
  round,
  runJoiners,
  uploadFromNode,
  writeWorkspaceFiles,
  type JoinRun,
  type OfficeContext,
  type Recorded,
} from './office.ts';
import { probeBridge, type BridgeProbeResult } from './bridge-probe.ts';
import { measureRawTcp, type RawTcpResult } from './raw-tcp.ts';
import type { BenchRow } from './report.ts';

/**
 * office-lan: an office whose on-premises cache box already holds the workspace. One
 * `nearsync peer --lan --cache-only` daemon runs inside the namespace and syncs S from the
 * server (pulled from the cloud once); then K browsers open the share link together. The
 * server bridges the daemon into the relay (its UDP adverts become LAN peers of the browsers;
 * bridge-fetch pulls blocks from it over TLS-PSK TCP), so the server's own block store should
 * serve nothing. Then the baseline: K fresh joiners with peers off, daemon stopped.
 */

const MiB = 1024 * 1024;
/** Bytes per bare TCP transfer: at least this, or S if larger (the veth moves hundreds of MB/s). */
const RAW_TCP_MIN_BYTES = 256 * MiB;

/**
 * Runs office-lan on a server of its own in the harness's namespace: the office scenarios'
 * egress cap, plus the LAN bridge (UDP bound to the veth's /30 broadcast address, adverts sent
 * there, so it hears and reaches only the namespace). The harness closes the server.
 */
export async function benchOfficeLan(context: Omit<OfficeContext, 'server'>): Promise<BenchRow> {
  const { harness } = context;
  const udpPort = lanTestUdpPort();
  // The /30 of the veth pair: host end, namespace end, then the broadcast address.
  const broadcast = harness.ns.broadcastAddress;
  const server = await harness.startServer({
    egressBytesPerSecond: context.egressBytesPerSecond,
    lanBridge: { udpPort, tcpPort: 0, bindAddress: harness.ns.hostAddress, udpListenAddress: broadcast, broadcastAddresses: [broadcast] },
  });
  const ctx: OfficeContext = { ...context, server };
  const dir = await mkdtemp(join(tmpdir(), 'nearsync-bench-office-lan-'));
  const daemons = new DaemonPool();
  try {
    const files = await writeWorkspaceFiles(dir, ctx.sizeMiB);
    const total = files.reduce((sum, file) => sum + file.bytes.length, 0);
    const errors: string[] = [];
    // The ceilings first, with nothing else running.
    const rawTcp = await measureRawTcpOnce(ctx, Math.max(RAW_TCP_MIN_BYTES, total));
    const rawChannel = await ctx.measureRawChannel();

    ctx.log(`office-lan: uploading ${FILES} files (${mib(total)} MiB) from Node`);
    const { writer, shareLink } = await uploadFromNode(ctx.server, files, 'bench office-lan');
    const journal = await new ServerApi(ctx.server.hostUrl, writer.token).readJournal(writer.namespaceId, 0, { limit: 1000 });
    const lastEntry = Math.max(...journal.entries.map((entry) => entry.sjid));

    // The cache box pulls S from the cloud once.
    const servedBeforeWarmUp = ctx.server.server.metrics().blockBytesServed;
    const warmUpStarted = performance.now();
    const daemon = daemons.start({
      netns: ctx.harness.ns,
      server: ctx.server.hostUrl,
      invite: writer.inviteUrl,
      dir: join(dir, 'cache-box'),
      cacheOnly: true,
      lan: { port: udpPort, tcpPort: 0, broadcast },
    });
    await daemon.waitFor(new RegExp(`in sync at journal entry ${lastEntry}\\b`), Math.max(120_000, (4 * total * 1000) / ctx.egressBytesPerSecond));
    const warmUpSeconds = (performance.now() - warmUpStarted) / 1000;
    const warmUpServerBytes = ctx.server.server.metrics().blockBytesServed - servedBeforeWarmUp;
    ctx.log(
      `office-lan: the cache-only daemon is in sync at entry ${lastEntry} after ${warmUpSeconds.toFixed(1)} s; ` +
        `the server sent it ${mib(warmUpServerBytes)} MiB (${(warmUpServerBytes / total).toFixed(3)} x S); ${ctx.joiners} joiners start`,
    );

    const bridgeBefore = bridgeMetrics(ctx);
    let run: JoinRun;
    try {
      run = await runJoiners(ctx, { shareLink, namespaceId: writer.namespaceId, total, peers: true, online: 1, name: 'office-lan', errors });
    } catch (error) {
      throw new Error(`${error instanceof Error ? error.message : String(error)}\n--- daemon output ---\n${daemon.output}`);
    }
    const bridge = bridgeDelta(bridgeBefore, bridgeMetrics(ctx));
    reportDuplicates(ctx, 'office-lan', run, total);
    // The bridge alone, both ways of carrying a block, while the daemon still runs.
    const hashes = [...new Set(journal.entries.flatMap((entry) => entry.blocks))];
    const probe = await probeBridge(ctx.server.hostUrl, writer.token, writer.namespaceId, hashes).catch((error: unknown) => {
      ctx.log(`office-lan: the bridge probe failed: ${error instanceof Error ? error.message : String(error)}`);
      return null;
    });
    if (probe) {
      ctx.log(
        `office-lan: bridge probe over ${probe.blocks} blocks: store-and-forward ${probe.storeForwardMbps.toFixed(1)} MB/s, ` +
          `streamed ${probe.streamedMbps.toFixed(1)} MB/s, batched ${probe.batchedMbps.toFixed(1)} MB/s (${probe.batchedEventsPerBlock.toFixed(1)} events a block); ` +
          `first byte ${probe.storeForwardFirstByteMs.toFixed(1)} ms vs ${probe.streamedFirstByteMs.toFixed(1)} ms vs ${probe.batchedFirstByteMs.toFixed(1)} ms`,
      );
    }
    ctx.log(
      `office-lan: the bridge carried ${mib(bridge.bytesLanToBrowsers)} MiB LAN → browsers in ${bridge.fetchesOk} fetches ` +
        `(failed: ${JSON.stringify(bridge.fetchesFailed)}), ${mib(bridge.bytesBrowsersToLan)} MiB browsers → LAN`,
    );
    const code = await daemon.stop();
    if (code !== 0) ctx.log(`office-lan: the daemon exited with ${code}:\n${daemon.output}`);

    const baseline = await runJoiners(ctx, { shareLink, namespaceId: writer.namespaceId, total, peers: false, online: 0, name: 'office-lan baseline', errors });
    reportErrors(ctx, 'office-lan', errors);
    return officeRow(ctx, 'office-lan', total, run, baseline, rawChannel, {
      warmup_seconds: round(warmUpSeconds),
      warmup_server_bytes: warmUpServerBytes,
      ...bridgeColumns(run, bridge.bytesLanToBrowsers, rawTcp, rawChannel?.mbps ?? null),
      ...probeColumns(probe, rawChannel?.mbps ?? null),
    });
  } finally {
    await daemons.stopAll();
    await rm(dir, { recursive: true, force: true });
  }
}

async function measureRawTcpOnce(ctx: OfficeContext, bytes: number): Promise<RawTcpResult | null> {
  try {
    const raw = await measureRawTcp(ctx.harness.ns, bytes);
    ctx.log(
      `bare TCP namespace → host (${mib(bytes)} MiB a transfer): ${raw.samples.map((mbps) => mbps.toFixed(0)).join(', ')} MB/s, ` +
        `median ${raw.mbps.toFixed(0)}, best ${raw.bestMbps.toFixed(0)}`,
    );
    return raw;
  } catch (error) {
    ctx.log(`bare TCP failed: ${error instanceof Error ? error.message : String(error)}`);
    return null;
  }
}

/**
 * - bridge_bytes: bytes the joiners' peer lists show received from LAN peers (all joiners).
 * - bridge_server_bytes: the bridge's own count of block bytes it carried LAN → browsers over
 *   the run (more than bridge_bytes when fetches were answered after the browser gave up).
 * - bridge_mbps: per joiner, LAN bytes from its first sample showing any to completion over
 *   that time, averaged over joiners (MB/s = 1e6 B/s).
 * - bridge_aggregate_mbps: all joiners' LAN bytes over the span from the first LAN byte
 *   anywhere to the last completion: what the bridge's one link to the daemon carried.
 * - raw_tcp_mbps: median bare TCP transfer namespace → host over the same veth, this run.
 * - bridge_ratio = bridge_mbps / raw_tcp_mbps; bridge_aggregate_ratio likewise.
 * - bridge_channel_ratio = bridge_mbps / raw_channel_mbps (the bare data channel, this run).
 */
function bridgeColumns(run: JoinRun, bridgeServerBytes: number, rawTcp: RawTcpResult | null, rawChannelMbps: number | null): BenchRow {
  const bridgeBytes = run.joiners.reduce((sum, joiner) => sum + joiner.final!.lan, 0);
  const perJoiner = meanOf(run.joiners.map(lanRate).filter((rate): rate is number => rate !== null));
  const firstLan = Math.min(...run.joiners.map((joiner) => joiner.firstLan ?? Infinity));
  const lastDone = Math.max(...run.joiners.map((joiner) => joiner.done!));
  const aggregate = Number.isFinite(firstLan) && lastDone > firstLan ? bridgeBytes / 1e6 / ((lastDone - firstLan) / 1000) : null;
  const raw = rawTcp?.mbps ?? null;
  const ratio = (mbps: number | null) => (mbps === null || raw === null ? null : round(mbps / raw));
  return {
    bridge_bytes: bridgeBytes,
    bridge_server_bytes: bridgeServerBytes,
    bridge_mbps: perJoiner === null ? null : round(perJoiner),
    bridge_aggregate_mbps: aggregate === null ? null : round(aggregate),
    raw_tcp_mbps: raw === null ? null : round(raw),
    bridge_ratio: ratio(perJoiner),
    bridge_aggregate_ratio: ratio(aggregate),
    bridge_channel_ratio: perJoiner === null || rawChannelMbps === null ? null : round(perJoiner / rawChannelMbps),
  };
}

/**
 * The bridge probe (bridge-probe.ts: one Node socket.io client on the host, every block of
 * the workspace, 4 in flight; then one at a time for the first byte):
 * - probe_sf_mbps / probe_stream_mbps: store-and-forward and streamed bridge fetches;
 * - probe_stream_vs_sf = probe_stream_mbps / probe_sf_mbps (same run, same blocks);
 * - probe_*_channel_ratio: each against raw_channel_mbps (the bare Chromium data channel);
 * - probe_sf_first_byte_ms / probe_stream_first_byte_ms: median time from asking to the first
 *   byte of a block in hand (the whole block, or its first piece).
 */
function probeColumns(probe: BridgeProbeResult | null, rawChannelMbps: number | null): BenchRow {
  if (!probe) return {};
  const vsChannel = (mbps: number) => (rawChannelMbps === null ? null : round(mbps / rawChannelMbps));
  return {
    probe_sf_mbps: round(probe.storeForwardMbps),
    probe_stream_mbps: round(probe.streamedMbps),
    probe_batch_mbps: round(probe.batchedMbps),
    probe_stream_vs_sf: round(probe.streamedMbps / probe.storeForwardMbps),
    probe_batch_vs_sf: round(probe.batchedMbps / probe.storeForwardMbps),
    probe_batch_vs_stream: round(probe.batchedMbps / probe.streamedMbps),
    probe_sf_channel_ratio: vsChannel(probe.storeForwardMbps),
    probe_stream_channel_ratio: vsChannel(probe.streamedMbps),
    probe_batch_channel_ratio: vsChannel(probe.batchedMbps),
    probe_sf_first_byte_ms: round(probe.storeForwardFirstByteMs),
    probe_stream_first_byte_ms: round(probe.streamedFirstByteMs),
    probe_batch_first_byte_ms: round(probe.batchedFirstByteMs),
    probe_batch_events_per_block: round(probe.batchedEventsPerBlock),
  };
}

/** One joiner's rate of receiving from LAN peers (MB/s), as peerRate does for browser peers. */
function lanRate(joiner: Recorded): number | null {
  if (joiner.firstLan === null || joiner.done === null || joiner.done <= joiner.firstLan) return null;
  const bytes = joiner.final!.lan - joiner.lanAtFirst;
  if (bytes <= 0) return null;
  return bytes / 1e6 / ((joiner.done - joiner.firstLan) / 1000);
}

function bridgeMetrics(ctx: OfficeContext): LanBridgeMetrics {
  const metrics = ctx.server.server.metrics().lanBridge;
  if (!metrics) throw new Error('office-lan needs a server with its LAN bridge on');
  return metrics;
}

function bridgeDelta(before: LanBridgeMetrics, after: LanBridgeMetrics): Pick<LanBridgeMetrics, 'bytesLanToBrowsers' | 'bytesBrowsersToLan' | 'fetchesOk' | 'fetchesFailed'> {
  const failed: Record<string, number> = {};
  for (const [code, count] of Object.entries(after.fetchesFailed)) {
    const delta = count - (before.fetchesFailed[code] ?? 0);
    if (delta > 0) failed[code] = delta;
  }
  return {
    bytesLanToBrowsers: after.bytesLanToBrowsers - before.bytesLanToBrowsers,
    bytesBrowsersToLan: after.bytesBrowsersToLan - before.bytesBrowsersToLan,
    fetchesOk: after.fetchesOk - before.fetchesOk,
    fetchesFailed: failed,
  };
}
