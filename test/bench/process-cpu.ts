import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { chromiumProcesses } from './chromium-rss.ts';

/**
 * CPU time of one Chromium instance (found by its marker switch, chromium-rss.ts) with a
 * per-thread breakdown, from /proc. The office benchmarks compare the CPU seconds per GiB a
 * joining browser spends against the bare data channel's receiving browser in the same run,
 * and log where it went by thread (the network service's IO thread, WebRTC's thread, the
 * workers, …). Linux only: elsewhere there is nothing to read.
 */

/** Clock ticks per second of /proc's utime and stime (USER_HZ: 100 on every Linux we run on). */
const TICKS_PER_SECOND = 100;

export interface TreeCpu {
  /** CPU seconds (user + system) of every process of the instance, ended threads included. */
  seconds: number;
  /** CPU seconds by `<process type>/<thread name>` (live threads only), for where it went. */
  threads: Map<string, number>;
}

/** CPU so far of the Chromium launched with `markerSwitch(tag)`; null when /proc shows none of it. */
export function chromiumThreadCpu(tag: string): TreeCpu | null {
  const processes = chromiumProcesses(tag);
  if (processes.length === 0) return null;
  let seconds = 0;
  const threads = new Map<string, number>();
  for (const { pid, type } of processes) {
    const process = readStat(`/proc/${pid}/stat`);
    if (!process) continue;
    seconds += process.seconds;
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // the process exited meanwhile
    }
    for (const tid of tids) {
      const thread = readStat(`/proc/${pid}/task/${tid}/stat`);
      if (!thread || thread.seconds === 0) continue;
      const key = `${type}/${thread.name}`;
      threads.set(key, (threads.get(key) ?? 0) + thread.seconds);
    }
  }
  return { seconds, threads };
}

/** `after - before`, per thread name too (a thread that ended in between counts only in the total). */
export function cpuBetween(before: TreeCpu, after: TreeCpu): TreeCpu {
  const threads = new Map<string, number>();
  for (const [key, seconds] of after.threads) {
    const spent = seconds - (before.threads.get(key) ?? 0);
    if (spent > 0) threads.set(key, spent);
  }
  return { seconds: after.seconds - before.seconds, threads };
}

/** The heaviest thread groups, as "type/name 1.23 s", for logs. */
export function describeThreads(cpu: TreeCpu, count = 16): string {
  return [...cpu.threads]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([key, seconds]) => `${key} ${seconds.toFixed(2)} s`)
    .join(', ');
}

/** CPU seconds per GiB (2^30 bytes). */
export function secondsPerGiB(seconds: number, bytes: number): number {
  return seconds / (bytes / 2 ** 30);
}

function readStat(path: string): { name: string; seconds: number } | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  // The name is in parentheses and may hold spaces: the fields follow the last ')'.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime 15.
  return { name: text.slice(open + 1, close), seconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND };
}

/** Cumulative CPU time of the whole machine from /proc/stat, in clock ticks over all cores. */
export interface MachineCpu {
  /** Running anything (user, system, interrupts), steal excluded. */
  busy: number;
  /** Time the hypervisor ran something else while this guest wanted the core: the host's load, not ours. */
  steal: number;
  total: number;
}

export async function cpuTimes(): Promise<MachineCpu | null> {
  try {
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    const fields = (await readFile('/proc/stat', 'utf8')).split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
    const total = fields.reduce((sum, value) => sum + value, 0);
    const idle = fields[3] + (fields[4] ?? 0);
    const steal = fields[7] ?? 0;
    return { busy: total - idle - steal, steal, total };
  } catch {
    return null;
  }
}

/** Shares of the machine busy and stolen between two readings of cpuTimes (null if either is missing). */
export function machineShares(before: MachineCpu | null, after: MachineCpu | null): { busy: number; steal: number } | null {
  if (!before || !after || after.total <= before.total) return null;
  const total = after.total - before.total;
  return { busy: (after.busy - before.busy) / total, steal: (after.steal - before.steal) / total };
}

/** "83% busy, 2% stolen by the host", or "?" where /proc/stat is missing. */
export function describeMachine(shares: { busy: number; steal: number } | null): string {
  return shares ? `${Math.round(shares.busy * 100)}% busy, ${Math.round(shares.steal * 100)}% stolen by the host` : '?';
}
