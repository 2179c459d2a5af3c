import { readdirSync, readFileSync } from 'node:fs';

/**
 * Resident memory of one Chromium instance, per process type, read from /proc. The
 * instance is found by a marker switch on the browser process's command line (Chromium
 * ignores switches it does not know; children do not inherit it), and its processes are
 * that process and all its descendants, so other engineers' browsers on the same machine
 * never count.
 */

export const PROCESS_TYPES = ['browser', 'renderer', 'gpu', 'network', 'storage', 'other'] as const;
export type ProcessType = (typeof PROCESS_TYPES)[number];
export type ByProcessType = Record<ProcessType, number>;
export type RssByType = ByProcessType;

const MiB = 1024 * 1024;

export function markerSwitch(tag: string): string {
  return `--nearsync-rss-tag=${tag}`;
}

export function processTypeOf(args: string): ProcessType {
  const type = /--type=([a-z-]+)/.exec(args)?.[1];
  if (!type) return 'browser';
  if (type === 'renderer') return 'renderer';
  if (type === 'gpu-process') return 'gpu';
  if (type === 'utility') {
    if (args.includes('network.mojom.NetworkService')) return 'network';
    if (args.includes('storage.mojom.StorageService')) return 'storage';
  }
  return 'other';
}

function readProc(pid: string, file: string): string | null {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return null; // the process exited meanwhile
  }
}

interface ProcEntry {
  pid: string;
  ppid: string;
  args: string;
}

function listProcesses(): ProcEntry[] {
  const entries: ProcEntry[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = readProc(pid, 'stat');
    const cmdline = readProc(pid, 'cmdline');
    if (!stat || cmdline === null) continue;
    // The command name in parentheses may hold spaces: the ppid follows its closing paren.
    const ppid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
    entries.push({ pid, ppid, args: cmdline.split('\0').join(' ') });
  }
  return entries;
}

function rssBytes(pid: string): number {
  const status = readProc(pid, 'status');
  const kib = status ? /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] : undefined;
  return kib ? Number(kib) * 1024 : 0;
}

/** The processes of the Chromium launched with `markerSwitch(tag)`: its browser process and all descendants. */
export function chromiumProcesses(tag: string): { pid: string; type: ProcessType }[] {
  const processes = listProcesses();
  const marker = markerSwitch(tag);
  const root = processes.find((entry) => entry.args.includes(marker) && !entry.args.includes('--type='));
  if (!root) return [];
  const children = new Map<string, ProcEntry[]>();
  for (const entry of processes) {
    const list = children.get(entry.ppid);
    if (list) list.push(entry);
    else children.set(entry.ppid, [entry]);
  }
  const found: { pid: string; type: ProcessType }[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const entry = queue.pop()!;
    found.push({ pid: entry.pid, type: processTypeOf(entry.args) });
    queue.push(...(children.get(entry.pid) ?? []));
  }
  return found;
}

/** RSS per process type of the Chromium launched with `markerSwitch(tag)`, in bytes. */
export function chromiumRss(tag: string): RssByType {
  const totals: RssByType = { browser: 0, renderer: 0, gpu: 0, network: 0, storage: 0, other: 0 };
  for (const { pid, type } of chromiumProcesses(tag)) totals[type] += rssBytes(pid);
  return totals;
}

/** Clock ticks per second of /proc's utime and stime (USER_HZ: 100 on every Linux we run on). */
const CLOCK_TICKS = 100;

/**
 * CPU seconds (user + system) each process type of that Chromium has used since it started.
 * A process that exited meanwhile takes its seconds with it: sample before and after a run
 * and subtract, with the browser kept open in between.
 */
export function chromiumCpuSeconds(tag: string): ByProcessType {
  const totals: RssByType = { browser: 0, renderer: 0, gpu: 0, network: 0, storage: 0, other: 0 };
  for (const { pid, type } of chromiumProcesses(tag)) {
    const stat = readProc(pid, 'stat');
    if (!stat) continue;
    // Fields after the command's closing paren: state is field 3, utime 14 and stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    totals[type] += (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  }
  return totals;
}

export function totalOf(rss: RssByType): number {
  return PROCESS_TYPES.reduce((sum, type) => sum + rss[type], 0);
}

/**
 * Samples a Chromium's RSS every `intervalMs` until stopped and keeps the peak of the
 * total and of each process type (each type's own peak, which may fall at different
 * moments).
 */
export class RssSampler {
  private timer: ReturnType<typeof setInterval> | null = null;
  private peakTotal = 0;
  private peakByType: RssByType = { browser: 0, renderer: 0, gpu: 0, network: 0, storage: 0, other: 0 };
  private samples = 0;

  constructor(
    private readonly tag: string,
    private readonly intervalMs = 250,
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    // A row that fails between start and stop must not keep the bench process alive.
    this.timer.unref();
  }

  stop(): { total: number; byType: RssByType; samples: number } {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    return { total: this.peakTotal, byType: { ...this.peakByType }, samples: this.samples };
  }

  private sample(): void {
    const rss = chromiumRss(this.tag);
    this.samples += 1;
    this.peakTotal = Math.max(this.peakTotal, totalOf(rss));
    for (const type of PROCESS_TYPES) this.peakByType[type] = Math.max(this.peakByType[type], rss[type]);
  }
}

/**
 * The `rss_*` columns of a bench row, in MiB: idle (before), peak (during) and growth, in
 * total and per process type.
 */
export function rssColumns(idle: RssByType, peak: { total: number; byType: RssByType }): Record<string, number> {
  const mib = (bytes: number) => Math.round(bytes / MiB);
  const columns: Record<string, number> = {
    rss_idle_mib: mib(totalOf(idle)),
    rss_peak_mib: mib(peak.total),
    rss_growth_mib: mib(peak.total - totalOf(idle)),
  };
  for (const type of PROCESS_TYPES) columns[`rss_${type}_growth_mib`] = mib(peak.byType[type] - idle[type]);
  for (const type of PROCESS_TYPES) columns[`rss_${type}_peak_mib`] = mib(peak.byType[type]);
  return columns;
}
