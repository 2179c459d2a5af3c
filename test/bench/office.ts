import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import type { Page } from 'playwright-core';
import { ServerApi } from '../../src/engine/server-api.ts';
import type { LocalBlockStore } from '../../src/engine/types.ts';
import { uploadFile } from '../../src/engine/uploader.ts';
import { MAX_BLOCK_SIZE, RELAY_PATH, RelayEvent, parseFilePath, parseNamespaceId, type BlockHash, type NamespaceId } from '../../src/protocol/index.ts';
import { createWorkspace, joinWithLink, uploadThroughPicker, waitForAllSynced, waitForUploadsDone } from '../e2e/ui.ts';
import type { NetnsHarness, NetnsTestServer } from '../netns/harness.ts';
import { nodeSha256 } from '../support/memory-stores.ts';
import type { BrowserKind } from './flags.ts';
import { describeConnections, readConnectionStats, RECORD_CONNECTIONS_SCRIPT, type ConnectionStats } from './connection-stats.ts';
import { cpuBetween, cpuTimes, describeMachine, describeThreads, machineShares, secondsPerGiB, type TreeCpu } from './process-cpu.ts';
import { closeProfiles, collectPageErrors, openProfile, openProfiles, type Profile } from './profiles.ts';
import type { RawChannelResult } from './raw-channel.ts';
import { profileWorkers } from './worker-profiler.ts';
import { median, type BenchRow } from './report.ts';

/**
 * An office pulling a workspace through a WAN link (the server's block egress capped by its
 * app-level token bucket), inside the network-namespace harness so that browsers connect to
 * each other over real WebRTC:
 *
 * - office-warm: one browser already holds the workspace (it uploaded it through the UI and
 *   is online, its download advertisement on the relay); K joiners open the share link
 *   together.
 * - office-cold: nobody holds it (uploaded from Node); K joiners with empty stores open the
 *   share link together and must share the server's bytes among themselves.
 * - office-lan (office-lan.ts, built from the parts exported here): a LAN daemon holds it and
 *   reaches the joiners through the server's LAN bridge.
 *
 * Each is followed by its baseline: K fresh joiners with peer sync turned off
 * (localStorage `nearsync:peers` = `off`), same workspace, same egress cap, same run.
 */

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** Files of every office workspace (S split into equal shares). */
export const FILES = 4;

export interface OfficeContext {
  harness: NetnsHarness;
  /** One server for the office scenarios, started with the egress cap. */
  server: NetnsTestServer;
  egressBytesPerSecond: number;
  sizeMiB: number;
  joiners: number;
  browsers: BrowserKind;
  /**
   * office-warm: how many times fresh joiners sync from the one seeder, each run after its own
   * bare data-channel measurement (--pair-runs; default 1).
   */
  pairRuns?: number;
  /**
   * Measures the bare data channel between two profiles of the same kind (MB/s, and the
   * receiver's CPU per GiB), or null if that failed. Each scenario calls it first, with no
   * other browser running.
   */
  measureRawChannel(): Promise<RawChannelResult | null>;
  /** Progress and diagnostics (stderr). */
  log(message: string): void;
  /** --profile: V8 CPU profiles of the first joiner's page and workers (peer runs) into PREFIX-<run>-*.cpuprofile. */
  profile?: string;
  /** Everything recorded in each joining run (timelines, block GETs), for --trace. */
  trace?(record: { name: string; run: unknown }): void;
}

export interface WorkspaceFile {
  name: string;
  path: string;
  bytes: Buffer;
}

/**
 * What the recorder (recorderScript) collected in one joiner's page. "Peer" bytes are those
 * from browser peers (WebRTC); "LAN" bytes those from LAN peers, which come through the
 * server's bridge (peer rows marked data-lan="true").
 */
export interface Recorded {
  /** Wall-clock ms when the page first listed the workspace's bytes, stored its first byte, got its first peer byte, was complete. */
  known: number | null;
  firstByte: number | null;
  firstPeer: number | null;
  /** Peer bytes at the first sample that showed any. */
  peerAtFirst: number;
  /** Wall-clock ms of the first sample showing bytes from a LAN peer, and those bytes. */
  firstLan: number | null;
  lanAtFirst: number;
  done: number | null;
  /** First time every expected peer (other joiners, and whoever was online) showed as connected (peers on). */
  allConnected: number | null;
  final: { done: number; total: number; peer: number; lan: number; peers: number; fromPeersText: string; fromServerText: string } | null;
  /** [ms, done bytes, browser-peer bytes, connected peers, LAN bytes] every ~500 ms. */
  timeline: [number, number, number, number, number][];
}

interface BlockGet {
  joiner: number;
  hash: BlockHash;
  start: number;
  end: number | null;
  outcome: 'ok' | 'failed' | 'open';
}

export interface JoinRun {
  startedAt: number;
  /** Seconds until the last joiner was complete. */
  seconds: number;
  serverBytes: number;
  serverRequests: number;
  joiners: Recorded[];
  gets: BlockGet[];
  /** [ms, server block bytes served since the start] every 250 ms. */
  serverTimeline: [number, number][];
  /** Share of the machine's CPU time busy (all processes, all cores) from start to the last completion; null off Linux. */
  cpuBusy: number | null;
  /** Share of the machine's CPU the host took (steal) over the same span; null off Linux. */
  cpuSteal: number | null;
  /**
   * Each joiner's browser CPU (all its processes, from /proc) from the start to the last
   * completion; null per joiner where it cannot be read (contexts of one process, not Linux).
   */
  joinerCpu: (TreeCpu | null)[];
  /** Block bytes each joiner sent other browsers (its peer list's "sent" cells), read after every joiner completed. */
  sentBytes: number[];
  /** Each joiner's WebRTC connections at completion (empty without peers). */
  connections: ConnectionStats[][];
}

export async function benchOfficeWarm(ctx: OfficeContext): Promise<BenchRow> {
  const dir = await mkdtemp(join(tmpdir(), 'nearsync-bench-office-'));
  try {
    const files = await writeWorkspaceFiles(dir, ctx.sizeMiB);
    const total = files.reduce((sum, file) => sum + file.bytes.length, 0);
    const errors: string[] = [];
    const pairRuns = Math.max(1, ctx.pairRuns ?? 1);
    const firstRawChannel = await ctx.measureRawChannel();

    ctx.log(`office-warm: seeder uploads ${FILES} files (${mib(total)} MiB) through the UI`);
    const seeder = await openProfile(ctx.harness, ctx.browsers);
    collectPageErrors(seeder.page, 'seeder', errors);
    // Each run: fresh joiners, and the bare channel measured just before (the first: before the
    // seeder opened), so a ratio compares two moments of the same sitting, not one and a mean.
    const runs: Array<{ run: JoinRun; rawChannel: RawChannelResult | null; seederCpuPerGiB: number | null }> = [];
    let namespaceId: NamespaceId;
    let shareLink: string;
    try {
      const created = await createWorkspace(seeder.page, ctx.server.origin, 'bench office-warm');
      namespaceId = parseNamespaceId(created.namespaceId);
      shareLink = created.shareLink;
      const uploadStarted = performance.now();
      await uploadThroughPicker(seeder.page, files.map((file) => file.path));
      await waitForUploadsDone(seeder.page, files.map((file) => file.name), 300_000);
      await waitForAllSynced(seeder.page, total, 120_000);
      ctx.log(`office-warm: seeder holds everything after ${((performance.now() - uploadStarted) / 1000).toFixed(1)} s; waiting for its advert`);
      const lastEntry = await waitForAdvert(ctx.server, shareLink, namespaceId, FILES);
      ctx.log(`office-warm: the relay lists the seeder at cursor ${lastEntry}; ${ctx.joiners} joiners start`);
      for (let i = 0; i < pairRuns; i++) {
        const rawChannel = i === 0 ? firstRawChannel : await ctx.measureRawChannel();
        const name = pairRuns > 1 ? `office-warm run ${i + 1}` : 'office-warm';
        const seederCpuBefore = await seeder.cpu();
        const run = await runJoiners(ctx, { shareLink, namespaceId, total, peers: true, online: 1, name, errors });
        const seederCpuAfter = await seeder.cpu();
        let seederCpuPerGiB: number | null = null;
        if (seederCpuBefore && seederCpuAfter) {
          const cpu = cpuBetween(seederCpuBefore, seederCpuAfter);
          seederCpuPerGiB = secondsPerGiB(cpu.seconds, total * ctx.joiners);
          ctx.log(`${name}: seeder browser CPU ${cpu.seconds.toFixed(2)} s, ${seederCpuPerGiB.toFixed(2)} s per GiB served (${describeThreads(cpu)})`);
        }
        reportDuplicates(ctx, name, run, total);
        runs.push({ run, rawChannel, seederCpuPerGiB });
      }
    } finally {
      await seeder.close();
    }
    const baseline = await runJoiners(ctx, { shareLink, namespaceId, total, peers: false, online: 0, name: 'office-warm baseline', errors });
    reportErrors(ctx, 'office-warm', errors);
    const rows = runs.map(({ run, rawChannel, seederCpuPerGiB }) =>
      officeRow(ctx, 'office-warm', total, run, baseline, rawChannel, {
        seeder_cpu_s_per_gib: seederCpuPerGiB === null ? null : round(seederCpuPerGiB),
      }),
    );
    return rows.length === 1 ? rows[0] : medianOfficeRow(rows);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Figures of an office row that runs repeat, reported as their median and, in `<name>_runs`, each run's. */
const PER_RUN_FIELDS = [
  'sync_seconds',
  'peer_mbps',
  'raw_channel_mbps',
  'raw_channel_steal',
  'peer_throughput_ratio',
  'peer_cpu_s_per_gib',
  'raw_cpu_s_per_gib',
  'peer_cpu_ratio',
  'peer_cpu_ratio_moved',
  'seeder_cpu_s_per_gib',
  'cpu_busy',
  'cpu_steal',
] as const;

/**
 * One row for several runs of a scenario: the first run's row, with each per-run figure
 * replaced by its median (the ratios are the medians of each run's own ratio) and listed per
 * run beside it, and the goals judged on the medians.
 */
function medianOfficeRow(rows: BenchRow[]): BenchRow {
  const merged: BenchRow = { ...rows[0], pair_runs: rows.length };
  for (const field of PER_RUN_FIELDS) {
    const values = rows.map((row) => row[field]).filter((value): value is number => typeof value === 'number');
    if (values.length === 0) continue;
    merged[field] = round(median(values));
    merged[`${field}_runs`] = values.map((value) => String(value)).join(' ');
  }
  merged.goal_status = officeWarmGoalStatus(merged);
  return merged;
}
export async function benchOfficeCold(ctx: OfficeContext): Promise<BenchRow> {
  const dir = await mkdtemp(join(tmpdir(), 'nearsync-bench-office-'));
  try {
    const files = await writeWorkspaceFiles(dir, ctx.sizeMiB);
    const total = files.reduce((sum, file) => sum + file.bytes.length, 0);
    const errors: string[] = [];
    const rawChannel = await ctx.measureRawChannel();

    ctx.log(`office-cold: uploading ${FILES} files (${mib(total)} MiB) from Node; no browser holds them`);
    const { writer, shareLink } = await uploadFromNode(ctx.server, files, 'bench office-cold');
    ctx.log(`office-cold: ${ctx.joiners} joiners start together`);
    const run = await runJoiners(ctx, { shareLink, namespaceId: writer.namespaceId, total, peers: true, online: 0, name: 'office-cold', errors });
    reportDuplicates(ctx, 'office-cold', run, total);
    const baseline = await runJoiners(ctx, {
      shareLink,
      namespaceId: writer.namespaceId,
      total,
      peers: false,
      online: 0,
      name: 'office-cold baseline',
      errors,
    });
    reportErrors(ctx, 'office-cold', errors);
    return officeRow(ctx, 'office-cold', total, run, baseline, rawChannel);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Creates a workspace and uploads `files` into it from Node, keeping no blocks here. Returns
 * the writer's workspace and the share link as pages in the namespace open it.
 */
export async function uploadFromNode(
  server: NetnsTestServer,
  files: WorkspaceFile[],
  title: string,
): Promise<{ writer: { namespaceId: NamespaceId; token: string; inviteUrl: string }; shareLink: string }> {
  const writer = await new ServerApi(server.hostUrl).createWorkspace(title);
  const api = new ServerApi(server.hostUrl, writer.token);
  for (const file of files) {
    await uploadFile({
      ns: writer.namespaceId,
      path: parseFilePath(file.name),
      mtime: Date.now(),
      stream: new Blob([new Uint8Array(file.bytes)]).stream(),
      api,
      blocks: DISCARD_STORE,
      sha256: nodeSha256,
    });
  }
  // The invite names the address Node used; pages open the same server at http://localhost.
  return { writer, shareLink: onOrigin(writer.inviteUrl, server.origin) };
}

/** The upload from Node keeps no blocks: nothing is read back unless the server asks (it never does here). */
const DISCARD_STORE: LocalBlockStore = {
  hasBlocks: async () => new Set(),
  putBlock: async () => undefined,
  getBlock: async () => null,
};

export async function writeWorkspaceFiles(dir: string, sizeMiB: number): Promise<WorkspaceFile[]> {
  const total = Math.round(sizeMiB * MiB);
  const files: WorkspaceFile[] = [];
  for (let i = 0; i < FILES; i++) {
    // Equal shares; the last file takes the remainder. Fresh random bytes every time.
    const size = i < FILES - 1 ? Math.floor(total / FILES) : total - Math.floor(total / FILES) * (FILES - 1);
    const name = `office-${i + 1}.bin`;
    const path = join(dir, name);
    const bytes = randomBytes(size);
    await writeFile(path, bytes);
    files.push({ name, path, bytes });
  }
  return files;
}

/**
 * Samples a joiner's page every 100 ms, from the UI's own attributes: overall progress
 * (`data-done-bytes` / `data-total-bytes`), the peer list (`data-bytes` received from each
 * peer, summed apart for LAN peers, `data-lan="true"`; `data-connected`), and the text of the bytes-from-peers / bytes-from-server counters
 * at completion. A plain script (not a serialised function) so no build helper leaks in.
 */
function recorderScript(total: number, expectPeers: number): string {
  return `(() => {
  if (window !== window.top || window.__nearsyncBench) return;
  const expected = ${total};
  const expectPeers = ${expectPeers};
  const rec = { known: null, firstByte: null, firstPeer: null, peerAtFirst: 0, firstLan: null, lanAtFirst: 0, done: null, allConnected: null, final: null, timeline: [] };
  Object.defineProperty(window, '__nearsyncBench', { value: rec });
  let lastSample = 0;
  const timer = setInterval(() => {
    const overall = document.querySelector('[data-testid="overall-progress"]');
    if (!overall) return;
    const total = Number(overall.getAttribute('data-total-bytes')) || 0;
    const done = Number(overall.getAttribute('data-done-bytes')) || 0;
    let peer = 0;
    let lan = 0;
    const rows = document.querySelectorAll('[data-testid="peer-row"]');
    for (const row of rows) {
      const cell = row.querySelector('[data-testid="peer-bytes-received"]');
      const bytes = cell ? Number(cell.getAttribute('data-bytes')) || 0 : 0;
      if (row.getAttribute('data-lan') === 'true') lan += bytes;
      else peer += bytes;
    }
    const connected = document.querySelectorAll('[data-testid="peer-row"][data-connected="true"]').length;
    const now = Date.now();
    if (rec.known === null && total > 0) rec.known = now;
    if (rec.firstByte === null && done > 0) rec.firstByte = now;
    if (rec.firstPeer === null && peer > 0) { rec.firstPeer = now; rec.peerAtFirst = peer; }
    if (rec.firstLan === null && lan > 0) { rec.firstLan = now; rec.lanAtFirst = lan; }
    if (rec.allConnected === null && expectPeers > 0 && connected >= expectPeers) rec.allConnected = now;
    const complete = total === expected && done === expected;
    if (now - lastSample >= 500 || complete) { lastSample = now; rec.timeline.push([now, done, peer, connected, lan]); }
    if (complete) {
      const text = (id) => (document.querySelector('[data-testid="' + id + '"]') || { textContent: '' }).textContent;
      rec.done = now;
      rec.final = { done, total, peer, lan, peers: rows.length, fromPeersText: text('bytes-from-peers'), fromServerText: text('bytes-from-server') };
      clearInterval(timer);
    }
  }, 100);
})();`;
}

const PEERS_OFF_SCRIPT = `try { localStorage.setItem('nearsync:peers', 'off'); } catch {}`;

/**
 * Opens K fresh profiles, has them open the share link at the same moment, and waits until
 * every one shows the whole workspace stored. Returns the server's block bytes served in
 * between, the time until the last joiner completed, and what each page recorded.
 */
export async function runJoiners(
  ctx: OfficeContext,
  options: {
    shareLink: string;
    namespaceId: NamespaceId;
    total: number;
    peers: boolean;
    /** Peers already online with the workspace (office-warm's seeder, office-lan's daemon). */
    online: number;
    name: string;
    errors: string[];
  },
): Promise<JoinRun> {
  const { shareLink, namespaceId, total, peers, name, errors } = options;
  // Peers each joiner can connect to: the other joiners and whoever is online already.
  const expectPeers = peers ? ctx.joiners - 1 + options.online : 0;
  const scripts = [recorderScript(total, expectPeers), RECORD_CONNECTIONS_SCRIPT];
  if (!peers) scripts.unshift(PEERS_OFF_SCRIPT);
  const profiles = await openProfiles(ctx.harness, ctx.browsers, ctx.joiners, { initScripts: scripts });
  const gets: BlockGet[] = [];
  const serverTimeline: [number, number][] = [];
  let sampler: ReturnType<typeof setInterval> | undefined;
  try {
    profiles.forEach((profile, index) => {
      collectPageErrors(profile.page, `${name} joiner ${index + 1}`, errors);
      watchBlockGets(profile, index, gets);
    });
    // Time for the whole download at the capped rate, once per joiner, with generous slack.
    const timeout = Math.max(120_000, (4 * ctx.joiners * total * 1000) / ctx.egressBytesPerSecond);
    const before = ctx.server.server.metrics();
    const cpuBefore = await cpuTimes();
    const joinerCpuBefore = await Promise.all(profiles.map((profile) => profile.cpu()));
    const browser = profiles[0].context.browser();
    const profiler = ctx.profile && peers && browser ? await profileWorkers(browser) : null;
    const startedAt = Date.now();
    sampler = setInterval(() => {
      serverTimeline.push([Date.now(), ctx.server.server.metrics().blockBytesServed - before.blockBytesServed]);
    }, 250);
    await Promise.all(profiles.map((profile) => joinWithLink(profile.page, shareLink, namespaceId)));
    try {
      await Promise.all(
        profiles.map((profile) =>
          profile.page.waitForFunction('Boolean(window.__nearsyncBench && window.__nearsyncBench.done)', undefined, {
            polling: 250,
            timeout,
          }),
        ),
      );
    } catch (error) {
      const progress = await Promise.all(profiles.map((profile) => readRecorded(profile).catch((e: unknown) => String(e))));
      const last = progress.map((p, i) => `joiner ${i + 1}: ${typeof p === 'string' ? p : JSON.stringify(p.timeline.at(-1))}`);
      throw new Error(`${name}: not every joiner synced within ${Math.round(timeout / 1000)} s (${last.join('; ')}): ${String(error)}`);
    }
    const cpuAfter = await cpuTimes();
    const joinerCpuAfter = await Promise.all(profiles.map((profile) => profile.cpu()));
    for (const { file, top } of (await profiler?.stop(`${ctx.profile}-${name.replace(/\W+/g, '-')}`)) ?? []) {
      ctx.log(`${name}: joiner 1 profile ${file}; heaviest self time:\n${top.map((t) => `  ${String(t.selfMs).padStart(7)} ms  ${t.fn}`).join('\n')}`);
    }
    const joiners = await Promise.all(profiles.map(readRecorded));
    const connections = peers ? await Promise.all(profiles.map((profile) => readConnectionStats(profile.page).catch(() => []))) : profiles.map(() => []);
    const doneAt = Math.max(...joiners.map((joiner) => joiner.done!));
    // Let the last write callbacks of the server's block responses land before reading.
    await new Promise((resolve) => setTimeout(resolve, 300));
    clearInterval(sampler);
    const after = ctx.server.server.metrics();
    // What each joiner sent other joiners: its page shows it within a view tick (1 s) and a pace (0.5 s).
    if (peers && ctx.joiners > 1) await new Promise((resolve) => setTimeout(resolve, Math.max(0, doneAt + SENT_VIEW_LAG_MS - Date.now())));
    const sentBytes = peers ? await Promise.all(profiles.map((profile) => bytesSentToPeers(profile.page))) : profiles.map(() => 0);
    const machine = machineShares(cpuBefore, cpuAfter);
    const run: JoinRun = {
      startedAt,
      seconds: (doneAt - startedAt) / 1000,
      serverBytes: after.blockBytesServed - before.blockBytesServed,
      serverRequests: after.blockRequestsServed - before.blockRequestsServed,
      joiners,
      gets,
      serverTimeline,
      cpuBusy: machine?.busy ?? null,
      cpuSteal: machine?.steal ?? null,
      connections,
      sentBytes,
      joinerCpu: joinerCpuAfter.map((after, i) => {
        const before = joinerCpuBefore[i];
        return before && after ? cpuBetween(before, after) : null;
      }),
    };
    logJoiners(ctx, name, run, total);
    ctx.trace?.({ name, run });
    return run;
  } finally {
    clearInterval(sampler);
    await closeProfiles(profiles);
  }
}

/** How late a joiner's page may show the last bytes it sent: the worker's view tick and its pace. */
const SENT_VIEW_LAG_MS = 1_600;

/** The sum of the page's "sent" cells: block bytes it sent to browser peers. */
async function bytesSentToPeers(page: Page): Promise<number> {
  return page
    .locator('[data-testid="peer-row"]:not([data-lan="true"]) [data-testid="peer-bytes-sent"]')
    .evaluateAll((cells) => cells.reduce((sum, cell) => sum + (Number(cell.getAttribute('data-bytes')) || 0), 0));
}

/** Block GETs to the server from any of the profile's pages or workers, with their timing. */
function watchBlockGets(profile: Profile, joiner: number, into: BlockGet[]): void {
  const open = new Map<object, BlockGet>();
  const blockUrl = /\/api\/v1\/blocks\/([0-9a-f]{64})(?:\?|$)/;
  profile.context.on('request', (request) => {
    const hash = blockUrl.exec(request.url())?.[1];
    if (!hash || request.method() !== 'GET') return;
    const get: BlockGet = { joiner, hash: hash as BlockHash, start: Date.now(), end: null, outcome: 'open' };
    open.set(request, get);
    into.push(get);
  });
  const settle = (request: object, outcome: 'ok' | 'failed') => {
    const get = open.get(request);
    if (!get) return;
    open.delete(request);
    get.end = Date.now();
    get.outcome = outcome;
  };
  profile.context.on('requestfinished', (request) => settle(request, 'ok'));
  profile.context.on('requestfailed', (request) => settle(request, 'failed'));
}

async function readRecorded(profile: Profile): Promise<Recorded> {
  return profile.page.evaluate('window.__nearsyncBench') as Promise<Recorded>;
}

/** Waits until the relay lists a peer of `ns` advertising at least the journal's last entry; returns that entry. */
async function waitForAdvert(server: NetnsTestServer, shareLink: string, ns: NamespaceId, minCursor: number): Promise<number> {
  const invite = new URL(shareLink).hash.replace(/^#invite=/, '');
  const { token } = await new ServerApi(server.hostUrl).join(invite);
  const page = await new ServerApi(server.hostUrl, token).readJournal(ns, 0, { limit: 1000 });
  const lastEntry = Math.max(minCursor, ...page.entries.map((entry) => entry.sjid));
  // A listener only: it never advertises, so no joiner sees it as a peer.
  const socket = io(server.hostUrl, { path: RELAY_PATH, auth: { tokens: [token], label: 'bench probe' }, transports: ['websocket'] });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no peer of ${ns} advertised cursor ${lastEntry} within 30 s`)), 30_000);
      const check = (adverts: { cursor: number }[]) => {
        if (adverts.some((advert) => advert.cursor >= lastEntry)) {
          clearTimeout(timer);
          resolve();
        }
      };
      socket.on(RelayEvent.peers, (list: { ns: string; peers: { cursor: number }[] }) => list.ns === ns && check(list.peers));
      socket.on(RelayEvent.advert, (advert: { ns: string; cursor: number }) => advert.ns === ns && check([advert]));
      socket.on('connect_error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  } finally {
    socket.close();
  }
  return lastEntry;
}

function onOrigin(link: string, origin: string): string {
  const url = new URL(link);
  return `${origin}${url.pathname}${url.search}${url.hash}`;
}

/**
 * One row. Times run from the moment the joiners open the share link (pages already loaded
 * with nothing) to the last one showing every byte stored.
 *
 * - server_block_bytes / server_block_requests: the server's blockBytesServed and
 *   blockRequestsServed counters over that span; egress_ratio = server_block_bytes / S.
 * - ideal_seconds: S / egress rate, the least time for one copy through the capped link.
 * - baseline_*: the same number of fresh joiners with peer sync off, same workspace and cap.
 * - peer_mbps: per joiner, the bytes its peer list says it received, from its first sample
 *   showing any to completion, over that time (MB/s = 1e6 B/s); averaged over joiners.
 *   peer_aggregate_mbps: all joiners' peer bytes over the span from the first peer byte
 *   anywhere to the last completion.
 * - raw_channel_mbps: median of the bare data channel between two profiles of the same kind,
 *   measured just before; peer_throughput_ratio = peer_mbps / raw_channel_mbps;
 *   raw_channel_steal: the share of the machine the host took during its transfers.
 * - peer_cpu_s_per_gib: the joiners' browsers' CPU seconds (every process of each, from /proc,
 *   start to the last completion: receiving, hashing, storing, serving other joiners, the UI)
 *   per GiB they received from peers; raw_cpu_s_per_gib: the bare channel's receiving browser
 *   per GiB received, same run; peer_cpu_ratio = the first over the second (in office-cold
 *   the CPU also covers what came from the server, so compare office-warm's). Null with
 *   `--browsers contexts` (one process holds every profile). office-warm adds
 *   seeder_cpu_s_per_gib: the seeder's browser over the same span, per GiB it could have
 *   served (S per joiner; the joiners also trade among themselves).
 * - peer_sent_bytes: block bytes the joiners sent each other (their peer lists' "sent" cells);
 *   peer_cpu_ratio_moved: the joiners' CPU against what the bare channel's receiver and sender
 *   spend per GiB for the bytes they received from peers and sent to them (K > 1 joiners also
 *   serve each other, which peer_cpu_ratio counts against received bytes only).
 * - cpu_busy: the machine's CPU busy share over the span (all processes, `cores` cores);
 *   cpu_steal: the share the host took from this guest meanwhile.
 * - `extra`: a scenario's own columns, placed before cpu_busy.
 *
 * Peer figures count browser peers only (WebRTC); bytes from LAN peers are office-lan's own columns.
 */
export function officeRow(
  ctx: OfficeContext,
  scenario: 'office-warm' | 'office-cold' | 'office-lan',
  total: number,
  run: JoinRun,
  baseline: JoinRun,
  rawChannel: RawChannelResult | null,
  extra: BenchRow = {},
): BenchRow {
  const rawChannelMbps = rawChannel?.mbps ?? null;
  const idealSeconds = total / ctx.egressBytesPerSecond;
  const egressRatio = run.serverBytes / total;
  const peerBytes = run.joiners.map((joiner) => joiner.final!.peer);
  const peerMbps = meanOf(run.joiners.map(peerRate).filter((rate): rate is number => rate !== null));
  // All joiners together: peer bytes over the span from the first peer byte anywhere to the last completion.
  const firstPeer = Math.min(...run.joiners.map((joiner) => joiner.firstPeer ?? Infinity));
  const lastDone = Math.max(...run.joiners.map((joiner) => joiner.done!));
  const peerTotal = peerBytes.reduce((sum, bytes) => sum + bytes, 0);
  const aggregate = Number.isFinite(firstPeer) && lastDone > firstPeer ? peerTotal / 1e6 / ((lastDone - firstPeer) / 1000) : null;
  const throughputRatio = peerMbps === null || rawChannelMbps === null ? null : peerMbps / rawChannelMbps;
  const joinerCpu = run.joinerCpu.every((cpu) => cpu !== null) ? run.joinerCpu.reduce((sum, cpu) => sum + cpu!.seconds, 0) : null;
  const peerCpuPerGiB = joinerCpu === null || peerTotal === 0 ? null : secondsPerGiB(joinerCpu, peerTotal);
  const rawCpuPerGiB = rawChannel?.receiverCpuSecondsPerGiB ?? null;
  const timeGoal = 1.25 * idealSeconds;
  // office-lan's holder is a daemon behind the bridge: its goal is that the server's store serves nothing.
  const goal =
    scenario === 'office-warm'
      ? OFFICE_WARM_GOAL
      : scenario === 'office-lan'
        ? 'egress_ratio <= 0.02 (the LAN daemon serves everything through the bridge)'
        : `egress_ratio <= 1.05; sync_seconds <= ${timeGoal.toFixed(1)} (1.25 x S / egress rate; without peers ${ctx.joiners} x that); ` +
          'peer_throughput_ratio >= 0.85';
  const peerCpuRatio = peerCpuPerGiB === null || rawCpuPerGiB === null ? null : peerCpuPerGiB / rawCpuPerGiB;
  // Joiners that also serve each other (K > 1) against what the bare channel's two ends spend for the same bytes each way.
  const peerSent = run.sentBytes.reduce((sum, bytes) => sum + bytes, 0);
  const rawSendPerGiB = rawChannel?.senderCpuSecondsPerGiB ?? null;
  const bareEquivalent =
    rawCpuPerGiB === null || rawSendPerGiB === null ? null : (peerTotal * rawCpuPerGiB + peerSent * rawSendPerGiB) / GiB;
  const movedCpuRatio = joinerCpu === null || bareEquivalent === null || bareEquivalent === 0 ? null : joinerCpu / bareEquivalent;
  const met = [
    `egress ${egressRatio <= (scenario === 'office-cold' ? 1.05 : 0.02) ? 'met' : 'missed'}`,
    ...(scenario === 'office-cold' ? [`time ${run.seconds <= timeGoal ? 'met' : 'missed'}`] : []),
    ...(scenario === 'office-lan' ? [] : [`peer ${throughputRatio !== null && throughputRatio >= 0.85 ? 'met' : 'missed'}`]),
  ].join(', ');
  const row: BenchRow = {
    scenario,
    browsers: ctx.browsers,
    joiners: ctx.joiners,
    workspace_bytes: total,
    egress_mbps: ctx.egressBytesPerSecond * 8 / 1e6,
    server_block_bytes: run.serverBytes,
    server_block_requests: run.serverRequests,
    egress_ratio: round(egressRatio),
    sync_seconds: round(run.seconds),
    ideal_seconds: round(idealSeconds),
    baseline_seconds: round(baseline.seconds),
    speedup: round(baseline.seconds / run.seconds),
    baseline_egress_ratio: round(baseline.serverBytes / total),
    peer_bytes: peerTotal,
    peer_mbps: peerMbps === null ? null : round(peerMbps),
    peer_aggregate_mbps: aggregate === null ? null : round(aggregate),
    raw_channel_mbps: rawChannelMbps === null ? null : round(rawChannelMbps),
    raw_channel_steal: rawChannel?.machine ? round(rawChannel.machine.steal, 3) : null,
    peer_throughput_ratio: throughputRatio === null ? null : round(throughputRatio),
    peer_cpu_s_per_gib: peerCpuPerGiB === null ? null : round(peerCpuPerGiB),
    raw_cpu_s_per_gib: rawCpuPerGiB === null ? null : round(rawCpuPerGiB),
    peer_cpu_ratio: peerCpuRatio === null ? null : round(peerCpuRatio),
    peer_sent_bytes: peerSent,
    peer_cpu_ratio_moved: movedCpuRatio === null ? null : round(movedCpuRatio),
    ...extra,
    cpu_busy: run.cpuBusy === null ? null : round(run.cpuBusy, 2),
    cpu_steal: run.cpuSteal === null ? null : round(run.cpuSteal, 3),
    cores: cpus().length,
    goal,
    goal_status: met,
  };
  if (scenario === 'office-warm') row.goal_status = officeWarmGoalStatus(row);
  return row;
}

/** Issue 14's browser-pair goals: the rate against the bare channel, and the receiving browser's CPU per GiB against its receiver's. */
const OFFICE_WARM_GOAL = 'egress_ratio <= 0.02; peer_throughput_ratio >= 0.9; peer_cpu_ratio <= 1.3';

/** office-warm's goal_status from a row's figures (a single run's, or the medians of several). */
function officeWarmGoalStatus(row: BenchRow): string {
  const at = (field: string) => (typeof row[field] === 'number' ? (row[field] as number) : null);
  const egress = at('egress_ratio');
  const throughput = at('peer_throughput_ratio');
  const cpu = at('peer_cpu_ratio');
  return [
    `egress ${egress !== null && egress <= 0.02 ? 'met' : 'missed'}`,
    `peer ${throughput !== null && throughput >= 0.9 ? 'met' : 'missed'}`,
    `peer cpu ${cpu !== null && cpu <= 1.3 ? 'met' : 'missed'}`,
  ].join(', ');
}

/**
 * One joiner's rate of receiving from peers (MB/s): peer bytes from its first sample showing
 * any to completion, over that time. The first block's own transfer time is not seen, so its
 * bytes are left out too. Null when it took (almost) nothing from peers.
 */
function peerRate(joiner: Recorded): number | null {
  if (joiner.firstPeer === null || joiner.done === null || joiner.done <= joiner.firstPeer) return null;
  const bytes = joiner.final!.peer - joiner.peerAtFirst;
  if (bytes <= 0) return null;
  return bytes / 1e6 / ((joiner.done - joiner.firstPeer) / 1000);
}

function logJoiners(ctx: OfficeContext, name: string, run: JoinRun, total: number): void {
  ctx.log(
    `${name}: all ${run.joiners.length} synced in ${run.seconds.toFixed(1)} s; server sent ${mib(run.serverBytes)} MiB ` +
      `(${(run.serverBytes / total).toFixed(3)} x S) in ${run.serverRequests} block responses; ` +
      `machine CPU ${run.cpuBusy === null ? '?' : describeMachine({ busy: run.cpuBusy, steal: run.cpuSteal ?? 0 })}`,
  );
  run.joiners.forEach((joiner, index) => {
    const at = (t: number | null) => (t === null ? '-' : `${((t - run.startedAt) / 1000).toFixed(1)}s`);
    const rate = peerRate(joiner);
    const gets = run.gets.filter((get) => get.joiner === index);
    ctx.log(
      `  joiner ${index + 1}: listed ${at(joiner.known)}, first byte ${at(joiner.firstByte)}, first peer byte ${at(joiner.firstPeer)}, ` +
        `peers connected ${at(joiner.allConnected)}, done ${at(joiner.done)}; from peers ${mib(joiner.final!.peer)} MiB ` +
        `${joiner.firstLan === null && joiner.final!.lan === 0 ? '' : `+ ${mib(joiner.final!.lan)} MiB from LAN peers (first LAN byte ${at(joiner.firstLan)}) `}` +
        `(UI: ${joiner.final!.fromPeersText} from peers, ${joiner.final!.fromServerText} from the server)` +
        `${rate === null ? '' : `, ${rate.toFixed(1)} MB/s from peers`}; block GETs ${gets.filter((g) => g.outcome === 'ok').length} ok, ` +
        `${gets.filter((g) => g.outcome !== 'ok').length} failed/aborted`,
    );
    const cpu = run.joinerCpu[index];
    if (run.sentBytes[index] > 0) ctx.log(`  joiner ${index + 1}: sent ${mib(run.sentBytes[index])} MiB to other joiners`);
    if (cpu) ctx.log(`  joiner ${index + 1}: browser CPU ${cpu.seconds.toFixed(2)} s (${describeThreads(cpu)})`);
    if (run.connections[index]?.length) ctx.log(`  joiner ${index + 1}: WebRTC ${describeConnections(run.connections[index], joiner.final!.peer)}`);
    // The per-peer cells (browser and LAN peers) and the bytes-from-peers counter should tell the same story.
    const listed = joiner.final!.peer + joiner.final!.lan;
    const counter = uiBytes(joiner.final!.fromPeersText);
    if (counter === null || Math.abs(counter - listed) > Math.max(0.01 * listed, 1000)) {
      ctx.log(`  joiner ${index + 1}: WARNING bytes-from-peers says ${joiner.final!.fromPeersText} but the peer list sums to ${listed} bytes`);
    }
  });
}

/**
 * Why the server sent more than S in office-cold: which blocks it sent to more than one
 * joiner, and whether the later GET started while the earlier one was still under way (the
 * block was in flight elsewhere, which nobody announces) or after it had finished (the
 * holder had it, but the asker had not heard of it or did not use it).
 */
export function reportDuplicates(ctx: OfficeContext, name: string, run: JoinRun, total: number): void {
  const byHash = new Map<string, BlockGet[]>();
  for (const get of run.gets) {
    if (get.outcome !== 'ok') continue;
    const list = byHash.get(get.hash) ?? [];
    list.push(get);
    byHash.set(get.hash, list);
  }
  const blocks = Math.ceil(total / MAX_BLOCK_SIZE);
  let duplicates = 0;
  let overlapping = 0;
  let afterFirstDone = 0;
  const lags: number[] = [];
  for (const list of byHash.values()) {
    list.sort((a, b) => a.start - b.start);
    const firstEnd = Math.min(...list.map((get) => get.end ?? Infinity));
    for (const later of list.slice(1)) {
      duplicates++;
      if (later.start < firstEnd) overlapping++;
      else {
        afterFirstDone++;
        lags.push(later.start - firstEnd);
      }
    }
  }
  const seen = run.gets.filter((get) => get.outcome === 'ok').length;
  ctx.log(
    `${name}: block GETs seen in the browsers: ${seen} complete for ${byHash.size} distinct of ${blocks} blocks; ` +
      `${duplicates} duplicates: ${overlapping} started while another joiner's GET of the same block was under way, ` +
      `${afterFirstDone} after one had completed (start lag after that completion: ${lags.map((ms) => `${ms} ms`).join(', ') || 'none'})`,
  );
}

/** The UI's "83.9 MB" as bytes (decimal units, as src/app/format.ts writes them); null when unreadable. */
function uiBytes(text: string): number | null {
  const match = /^([\d.]+) (B|kB|MB|GB|TB)$/.exec(text.trim());
  if (!match) return null;
  return Number(match[1]) * 1000 ** ['B', 'kB', 'MB', 'GB', 'TB'].indexOf(match[2]);
}

export function reportErrors(ctx: OfficeContext, name: string, errors: string[]): void {
  if (errors.length === 0) return;
  const unique = [...new Set(errors)];
  ctx.log(`${name}: ${unique.length} distinct page error(s):\n  ${unique.slice(0, 20).join('\n  ')}`);
}

export function meanOf(values: number[]): number | null {
  return values.length === 0 ? null : values.reduce((sum, value) => sum + value, 0) / values.length;
}

export function round(value: number, digits = 3): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

export function mib(bytes: number): string {
  return (bytes / MiB).toFixed(1);
}
