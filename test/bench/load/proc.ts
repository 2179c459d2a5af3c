import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/**
 * Readings of Linux /proc for processes this benchmark watches: resident memory, CPU time,
 * the open-file limit. Linux only, like the rest of the load bench.
 */

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat; 100 on every Linux build we run on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Resident set size (VmRSS) in bytes, or null when the process is gone. */
export function rssBytes(pid: number): number | null {
  const status = readOrNull(`/proc/${pid}/status`);
  const kib = status && /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
  return kib ? Number(kib) * 1024 : null;
}

/** User plus system CPU time in seconds, or null when the process is gone. */
export function cpuSeconds(pid: number): number | null {
  const stat = readOrNull(`/proc/${pid}/stat`);
  if (!stat) return null;
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the name, field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return (utime + stime) / CLOCK_TICKS_PER_SECOND;
}

/** The command name of a process (/proc/<pid>/comm), or null when it is gone. */
export function commandName(pid: number): string | null {
  return readOrNull(`/proc/${pid}/comm`)?.trim() ?? null;
}

/** Pids of every process whose command name is `name` (e.g. all postgres processes). */
export function pidsNamed(name: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .filter((pid) => commandName(pid) === name);
}

/** The soft limit on open files of this process (children inherit it), or null when unreadable. */
export function openFileLimit(): number | null {
  const limits = readOrNull('/proc/self/limits');
  const soft = limits && /^Max open files\s+(\d+|unlimited)/m.exec(limits)?.[1];
  if (!soft) return null;
  return soft === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(soft);
}

/**
 * CPU used by a set of processes over a window, as a percentage of one core (200 % = both
 * cores of a 2-core machine). A process that exits during the window is not counted; one
 * that appears (a new database connection) counts all it used, nearly all of it in the window.
 */
export class CpuMeter {
  private readonly startSeconds = new Map<number, number>();
  private readonly startedAt = performance.now();

  constructor(pids: number[]) {
    for (const pid of pids) {
      const seconds = cpuSeconds(pid);
      if (seconds !== null) this.startSeconds.set(pid, seconds);
    }
  }

  /** Percent of one core since construction, summed over `pidsNow` (default: the starting set). */
  percent(pidsNow: number[] = [...this.startSeconds.keys()]): number {
    const elapsed = (performance.now() - this.startedAt) / 1000;
    let used = 0;
    for (const pid of new Set(pidsNow)) {
      const now = cpuSeconds(pid);
      if (now !== null) used += now - (this.startSeconds.get(pid) ?? 0);
    }
    return elapsed > 0 ? (used / elapsed) * 100 : 0;
  }
}

/** Busy CPU time of the whole machine (every core, every process) from /proc/stat, in seconds. */
function machineBusySeconds(): number {
  const line = readOrNull('/proc/stat')?.split('\n')[0] ?? '';
  // cpu user nice system idle iowait irq softirq steal …
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (ticks.length < 8 || ticks.some((t) => !Number.isFinite(t))) return 0;
  const idle = ticks[3] + ticks[4];
  return (ticks.reduce((a, b) => a + b, 0) - idle) / CLOCK_TICKS_PER_SECOND;
}

/** Machine-wide busy CPU over a window, percent of one core (2 cores: at most 200 %). */
export class MachineCpuMeter {
  private readonly start = machineBusySeconds();
  private readonly startedAt = performance.now();

  percent(): number {
    const elapsed = (performance.now() - this.startedAt) / 1000;
    return elapsed > 0 ? ((machineBusySeconds() - this.start) / elapsed) * 100 : 0;
  }
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

interface TcpSocket {
  localPort: number;
  remotePort: number;
}

/** Every TCP socket of this network namespace by inode (/proc/net/tcp and tcp6). */
function tcpSocketsByInode(): Map<number, TcpSocket> {
  const sockets = new Map<number, TcpSocket>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = readOrNull(file);
    if (!text) continue;
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const localPort = parseInt(fields[1].split(':')[1], 16);
      const remotePort = parseInt(fields[2].split(':')[1], 16);
      const inode = Number(fields[9]);
      if (inode > 0) sockets.set(inode, { localPort, remotePort });
    }
  }
  return sockets;
}

/** Inodes of the sockets a process holds open (/proc/<pid>/fd links like `socket:[1234]`). */
function socketInodes(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  const inodes: number[] = [];
  for (const fd of entries) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.push(Number(match[1]));
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/**
 * The processes among `candidates` that hold the far end of `pid`'s TCP connections to
 * `servicePort` on this machine: e.g. the PostgreSQL backends serving one nearsync server,
 * told apart from the backends of anyone else's test run by the client ports they face.
 */
export function peersOfConnections(pid: number, servicePort: number, candidates: number[]): number[] {
  const sockets = tcpSocketsByInode();
  const clientPorts = new Set<number>();
  for (const inode of socketInodes(pid)) {
    const socket = sockets.get(inode);
    if (socket?.remotePort === servicePort) clientPorts.add(socket.localPort);
  }
  if (clientPorts.size === 0) return [];
  return candidates.filter((candidate) =>
    socketInodes(candidate).some((inode) => {
      const socket = sockets.get(inode);
      return socket !== undefined && socket.localPort === servicePort && clientPorts.has(socket.remotePort);
    }),
  );
}
