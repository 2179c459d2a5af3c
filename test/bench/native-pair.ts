import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerApi } from '../../src/engine/server-api.ts';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { linkNamespaces, type NamespaceLink } from '../netns/namespace-link.ts';
import { createNamespace, stopProcess, type Netns } from '../netns/netns.ts';
import { DaemonPool } from '../support/lan-daemon.ts';
import { bareTcpOnce } from './native/bare-tcp.ts';
import { receivedBytes, treeCpuSeconds } from './native/proc-stats.ts';
import { generateDevice, installSyncthing, startSyncthing, writeConfig, type RunningSyncthing, type SyncthingDevice } from './native/syncthing.ts';
import { watchTransfer, type ExpectedFile, type TransferFigures } from './native/transfer-watch.ts';
import { uploadFromNode, writeWorkspaceFiles } from './office.ts';
import { median, type BenchRow } from './report.ts';
import { heaviest } from './worker-profiler.ts';

/**
 * native-pair: daemon → daemon over a veth between two network namespaces (two machines on
 * one switch), nearsync (`nearsync peer --lan`) against Syncthing (Debian's package) with the
 * same files, runs alternating, plus bare TCP over the same veth as the ceiling.
 *
 * Namespace A (the harness's, with the nearsync server on the host end of its veth) holds the
 * senders; namespace B the receivers; the blocks cross only the A–B veth. Each run starts a
 * fresh receiver while the sender is already in sync (nearsync: it pulled the files from the
 * server once; Syncthing: it finished its initial scan), and times the receiver from its start.
 * B reaches the nearsync server for the journal through its own veth to the host, so only
 * block traffic (and Syncthing's index) is on the measured link.
 */

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

interface Results {
  nearsync: TransferFigures[];
  syncthing: TransferFigures[];
  serverBytes: number[];
  /** Sender CPU seconds (its process tree, receiver start → files complete) per GiB of files. */
  senderCpu: number[];
  syncthingSenderCpu: number[];
  /** The nearsync receiver's state directory size / its folder's size, once in sync. */
  stateRatio: number[];
}
const UDP_PORT = 21_027 + Math.floor(Math.random() * 1000) * 3;
/** Production timings for the daemons (the test defaults poll and rescan much more often). */
const DAEMON_ENV = { NEARSYNC_LONG_POLL_SECONDS: '25', NEARSYNC_RESCAN_MS: '30000', NEARSYNC_DEBOUNCE_MS: '300' };

interface Side {
  ns: Netns;
  address: string;
  iface: string;
}

/**
 * With `profile` (the bench's --profile PREFIX), each nearsync receiver runs with `--cpu-prof`
 * into PREFIX-native-<run>/, and its heaviest functions are logged.
 */
export async function benchNativePair(
  sizeMiB: number,
  repeats: number,
  log: (message: string) => void,
  profile?: string,
  senderFrom: 'pulled' | 'scanned' = 'pulled',
): Promise<BenchRow[]> {
  installSyncthing(log);
  const harness = await NetnsHarness.start({ buildApp: false });
  const cleanups: (() => Promise<unknown>)[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'nearsync-bench-native-pair-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  try {
    const nsB = await createNamespace();
    cleanups.push(() => nsB.close());
    const link = await linkNamespaces(harness.ns, nsB);
    const a: Side = { ns: harness.ns, address: link.aAddress, iface: link.aInterface };
    const b: Side = { ns: nsB, address: link.bAddress, iface: link.bInterface };
    const anchor = await namespaceAnchor(b);
    cleanups.push(() => stopProcess(anchor.child));

    const source = join(dir, 'source');
    await mkdir(source);
    const written = await writeWorkspaceFiles(source, sizeMiB);
    const files: ExpectedFile[] = written.map((file) => ({ name: file.name, bytes: file.bytes }));
    const total = files.reduce((sum, file) => sum + file.bytes.length, 0);
    log(`native-pair: ${files.length} files, ${(total / MiB).toFixed(0)} MiB, over the veth ${link.aAddress} → ${link.bAddress}`);

    const bare: number[] = [];
    for (let i = 0; i < 3; i++) bare.push(await bareTcpOnce(a.ns, b.ns, b.address, Math.max(total, 256 * MiB)));
    log(`native-pair: bare TCP ${bare.map((mbps) => mbps.toFixed(0)).join(', ')} MB/s`);

    const server = await harness.startServer();
    const senderProfile = profile ? `${profile}-native-sender` : undefined;
    const nearsync = await startNearsyncSender(server, written, source, senderFrom, a, link, dir, log, senderProfile);
    cleanups.push(async () => {
      await nearsync.pool.stopAll();
      if (senderProfile) await logProfile(senderProfile, log, 'sender');
    });
    const syncthing = await startSyncthingSender(a, b, source, dir, log);
    cleanups.push(() => syncthing.sender.stop());

    const results: Results = { nearsync: [], syncthing: [], serverBytes: [], senderCpu: [], syncthingSenderCpu: [], stateRatio: [] };
    for (let run = 1; run <= repeats; run++) {
      const before = server.server.metrics().blockBytesServed;
      const profileDir = profile ? `${profile}-native-${run}` : undefined;
      const senderCpuBefore = await treeCpuSeconds(nearsync.pid);
      const ours = await nearsyncRun(nearsync, server, b, link, files, anchor.pid, join(dir, `nearsync-b-${run}`), profileDir, (ratio) => results.stateRatio.push(ratio));
      results.senderCpu.push(((await treeCpuSeconds(nearsync.pid)) - senderCpuBefore) / (total / GiB));
      if (profileDir) await logProfile(profileDir, log);
      const serverBytes = server.server.metrics().blockBytesServed - before;
      results.nearsync.push(ours);
      results.serverBytes.push(serverBytes);
      log(`native-pair run ${run}: nearsync ${describe(ours)}; server block bytes ${serverBytes}`);
      const theirSenderBefore = await treeCpuSeconds(syncthing.sender.child.pid!);
      const theirs = await syncthingRun(syncthing.receiver, b, files, anchor.pid);
      results.syncthingSenderCpu.push(((await treeCpuSeconds(syncthing.sender.child.pid!)) - theirSenderBefore) / (total / GiB));
      results.syncthing.push(theirs);
      log(`native-pair run ${run}: syncthing ${describe(theirs)}`);
    }
    return rows(sizeMiB, repeats, bare, results, senderFrom);
  } finally {
    while (cleanups.length > 0) await cleanups.pop()!().catch((error: Error) => log(`native-pair cleanup: ${error.message}`));
    await harness.close();
  }
}

/** A process that lives in B's namespace all along, so /proc/<pid>/net/dev shows B's link counters. */
async function namespaceAnchor(b: Side): Promise<{ pid: number; child: ReturnType<Netns['spawn']> }> {
  const child = b.ns.spawn('sleep', ['86400'], { stdio: 'ignore' });
  const deadline = performance.now() + 5_000;
  for (;;) {
    if (child.pid !== undefined && (await receivedBytes(child.pid, b.iface).then(() => true, () => false))) return { pid: child.pid, child };
    if (performance.now() > deadline) throw new Error(`could not see ${b.iface} from inside ${b.ns.name}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface NearsyncSender {
  pool: DaemonPool;
  pid: number;
  invite: string;
  lastEntry: number;
}

/**
 * The nearsync sender, in sync with the workspace: 'pulled', it fetched the files from the
 * server (what a daemon serving what it just received does); 'scanned', it found them in its
 * folder and uploaded them.
 */
async function startNearsyncSender(
  server: NetnsTestServer,
  written: Awaited<ReturnType<typeof writeWorkspaceFiles>>,
  source: string,
  senderFrom: 'pulled' | 'scanned',
  a: Side,
  link: NamespaceLink,
  dir: string,
  log: (message: string) => void,
  profileDir: string | undefined,
): Promise<NearsyncSender> {
  const writer =
    senderFrom === 'pulled' ? (await uploadFromNode(server, written, 'bench native-pair')).writer : await new ServerApi(server.hostUrl).createWorkspace('bench native-pair');
  const folder = join(dir, 'nearsync-a');
  if (senderFrom === 'scanned') await cp(source, folder, { recursive: true });
  const pool = new DaemonPool();
  const sender = pool.start({
    netns: a.ns,
    server: server.hostUrl,
    invite: writer.inviteUrl,
    dir: folder,
    lan: { port: UDP_PORT, tcpPort: 0, broadcast: link.broadcastAddress },
    env: DAEMON_ENV,
    nodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
  });
  if (senderFrom === 'scanned') {
    for (const file of written) await sender.waitFor(new RegExp(`uploaded ${file.name.replace(/[.]/g, '\\.')} `), 600_000);
  }
  const journal = await new ServerApi(server.hostUrl, writer.token).readJournal(writer.namespaceId, 0, { limit: 1000 });
  const lastEntry = Math.max(...journal.entries.map((entry) => entry.sjid));
  await sender.waitFor(new RegExp(`in sync at journal entry ${lastEntry}\\b`), 120_000);
  log(`native-pair: the nearsync sender (${senderFrom}) is in sync at entry ${lastEntry}`);
  return { pool, pid: sender.pid, invite: writer.inviteUrl, lastEntry };
}

async function nearsyncRun(
  sender: NearsyncSender,
  server: NetnsTestServer,
  b: Side,
  link: NamespaceLink,
  files: ExpectedFile[],
  anchorPid: number,
  folder: string,
  profileDir: string | undefined,
  onStateRatio: (ratio: number) => void,
): Promise<TransferFigures> {
  const pool = new DaemonPool();
  const nodeArgs = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  try {
    const startedAt = performance.now();
    const receiver = pool.start({
      netns: b.ns,
      server: server.hostUrl,
      invite: sender.invite,
      dir: folder,
      lan: { port: UDP_PORT, tcpPort: 0, broadcast: link.broadcastAddress },
      env: DAEMON_ENV,
      nodeArgs,
    });
    const figures = await watchTransfer({
      receiverPid: receiver.pid,
      namespacePid: anchorPid,
      iface: b.iface,
      folder,
      files,
      startedAt,
      timeoutMs: 300_000,
      alive: () => receiver.running,
      describeFailure: () => receiver.output,
    });
    // "in sync" is logged once every file is in place; the state dir is measured after it.
    await receiver.waitFor(new RegExp(`in sync at journal entry ${sender.lastEntry}\\b`), 60_000);
    onStateRatio((await treeBytes(`${folder}.nearsync`)) / (await treeBytes(folder)));
    return figures;
  } finally {
    await pool.stopAll();
    await rm(folder, { recursive: true, force: true });
    await rm(`${folder}.nearsync`, { recursive: true, force: true });
  }
}

async function startSyncthingSender(a: Side, b: Side, source: string, dir: string, log: (message: string) => void) {
  const device = async (side: Side, name: string): Promise<SyncthingDevice> => {
    const configDir = join(dir, `syncthing-${name}`, 'config');
    return { configDir, dataDir: join(dir, `syncthing-${name}`, 'data'), folder: join(dir, `syncthing-${name}`, 'folder'), address: side.address, id: await generateDevice(side.ns, configDir), ns: side.ns };
  };
  const sender = await device(a, 'a');
  const receiver = await device(b, 'b');
  await writeConfig(sender, receiver);
  await writeConfig(receiver, sender);
  await cp(source, sender.folder, { recursive: true });
  const started = performance.now();
  const running = startSyncthing(sender);
  await running.waitFor(/Completed initial scan/, 120_000);
  log(`native-pair: the Syncthing sender finished its initial scan in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return { sender: running, receiver };
}

async function syncthingRun(device: SyncthingDevice, b: Side, files: ExpectedFile[], anchorPid: number): Promise<TransferFigures> {
  await rm(device.dataDir, { recursive: true, force: true });
  await rm(device.folder, { recursive: true, force: true });
  await mkdir(join(device.folder, '.stfolder'), { recursive: true });
  let running: RunningSyncthing | null = null;
  try {
    const startedAt = performance.now();
    running = startSyncthing(device);
    const child = running.child;
    return await watchTransfer({
      receiverPid: child.pid!,
      namespacePid: anchorPid,
      iface: b.iface,
      folder: device.folder,
      files,
      startedAt,
      timeoutMs: 300_000,
      alive: () => child.exitCode === null,
      describeFailure: () => running!.output(),
    });
  } finally {
    await running?.stop();
  }
}

/** Bytes of every regular file under `dir` (a file's size, not its blocks on disk). */
async function treeBytes(dir: string): Promise<number> {
  let bytes = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) bytes += (await stat(join(entry.parentPath ?? entry.path, entry.name))).size;
  }
  return bytes;
}

async function logProfile(dir: string, log: (message: string) => void, who = 'receiver'): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.endsWith('.cpuprofile')) continue;
    const top = heaviest(JSON.parse(await readFile(join(dir, name), 'utf8')), 30);
    log(`native-pair: ${who} profile ${join(dir, name)}, heaviest functions (self ms):\n${top.map((entry) => `  ${String(entry.selfMs).padStart(6)}  ${entry.fn}`).join('\n')}`);
  }
}

const round = (value: number, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;
const describe = (f: TransferFigures) =>
  `network ${f.networkMbps.toFixed(0)} MB/s over ${f.networkSeconds.toFixed(2)} s, complete after ${f.completeSeconds.toFixed(2)} s ` +
  `(${f.tailSeconds.toFixed(2)} s after the network), receiver CPU ${f.cpuSecondsPerGiB.toFixed(2)} s/GiB in the transfer, ${f.cpuTotalSeconds.toFixed(2)} s in all ` +
  `(by thread in the transfer: ${Object.entries(f.threads)
    .filter(([, seconds]) => seconds >= 0.01)
    .sort((a, b) => b[1] - a[1])
    .map(([name, seconds]) => `${name} ${seconds.toFixed(2)}`)
    .join(', ')})`;

/**
 * One row per system, medians over the runs (each run's figures in *_runs):
 * - network_mbps: file bytes / (first MiB on the link → 99.9 % of the files' bytes on it).
 * - complete_s: receiver start → every file in its folder at full size (bytes checked after).
 * - tail_s: the 99.9 % mark → complete (how long the files lag the network).
 * - cpu_s_per_gib: receiver CPU (all its processes, /proc) from the first MiB on the link to
 *   complete, per GiB of files; cpu_total_s: its CPU seconds start → complete, startup included.
 * - sender_cpu_s_per_gib: the sender's CPU (its process tree) from the receiver's start to
 *   complete, per GiB of files (the median; `_runs`: each run's, the first one's being where a
 *   nearsync sender reads each block for the first time).
 * - state_dir_vs_folder: the nearsync receiver's state directory / its folder, in bytes, once
 *   it said "in sync" (the largest of the runs).
 * - *_vs_syncthing: nearsync's figure / Syncthing's (network: higher is better; complete and CPU: lower).
 * - bare TCP: the same veth with nothing on top.
 */
function rows(sizeMiB: number, repeats: number, bare: number[], results: Results, senderFrom: 'pulled' | 'scanned'): BenchRow[] {
  const summary = (runs: TransferFigures[]) => ({
    network_mbps: round(median(runs.map((f) => f.networkMbps)), 1),
    complete_s: round(median(runs.map((f) => f.completeSeconds))),
    tail_s: round(median(runs.map((f) => f.tailSeconds))),
    cpu_s_per_gib: round(median(runs.map((f) => f.cpuSecondsPerGiB))),
    cpu_total_s: round(median(runs.map((f) => f.cpuTotalSeconds))),
    link_bytes: Math.round(median(runs.map((f) => f.linkBytes))),
    network_mbps_runs: runs.map((f) => f.networkMbps.toFixed(0)).join(' '),
    complete_s_runs: runs.map((f) => f.completeSeconds.toFixed(2)).join(' '),
  });
  const ours = summary(results.nearsync);
  const theirs = summary(results.syncthing);
  const bareMbps = median(bare);
  return [
    {
      scenario: 'native-pair',
      system: 'nearsync',
      size_mib: sizeMiB,
      runs: repeats,
      sender: senderFrom,
      ...ours,
      network_vs_syncthing: round(ours.network_mbps / theirs.network_mbps),
      // Each run against Syncthing's right after it: how far the ratio swings within one bench.
      network_vs_syncthing_runs: results.nearsync.map((f, i) => (f.networkMbps / results.syncthing[i].networkMbps).toFixed(2)).join(' '),
      complete_vs_syncthing: round(ours.complete_s / theirs.complete_s),
      cpu_vs_syncthing: round(ours.cpu_s_per_gib / theirs.cpu_s_per_gib),
      network_vs_bare_tcp: round(ours.network_mbps / bareMbps),
      server_block_bytes: Math.max(...results.serverBytes),
      sender_cpu_s_per_gib: round(median(results.senderCpu)),
      sender_cpu_s_per_gib_runs: results.senderCpu.map((cpu) => cpu.toFixed(2)).join(' '),
      state_dir_vs_folder: round(Math.max(...results.stateRatio), 4),
    },
    {
      scenario: 'native-pair',
      system: 'syncthing 1.19',
      size_mib: sizeMiB,
      runs: repeats,
      ...theirs,
      network_vs_bare_tcp: round(theirs.network_mbps / bareMbps),
      sender_cpu_s_per_gib: round(median(results.syncthingSenderCpu)),
      sender_cpu_s_per_gib_runs: results.syncthingSenderCpu.map((cpu) => cpu.toFixed(2)).join(' '),
    },
    { scenario: 'native-pair', system: 'bare tcp', size_mib: sizeMiB, runs: bare.length, network_mbps: round(bareMbps, 1), network_mbps_runs: bare.map((mbps) => mbps.toFixed(0)).join(' ') },
  ];
}
