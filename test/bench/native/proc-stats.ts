import { readdir, readFile } from 'node:fs/promises';

/**
 * Figures read from /proc for the native-pair bench: CPU seconds of a process and every
 * descendant (a daemon started through `ip netns exec` and tsx is a small tree), and the bytes
 * an interface received as seen from inside the process's network namespace
 * (/proc/<pid>/net/dev shows the namespace of <pid>, so the bench needs no helper inside it).
 */

const CLOCK_TICKS = 100; // USER_HZ on Linux

interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in ticks: the process, and its children already reaped. */
  ticks: number;
}

async function readStat(pid: number): Promise<ProcStat | null> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: split after its closing one.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // fields[0] is the state (field 3); utime is field 14, so fields[11].
    const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    return { pid, ppid: Number(fields[1]), ticks };
  } catch {
    return null; // gone
  }
}

/** CPU seconds used so far by `root` and every live descendant (reaped children included). */
export async function treeCpuSeconds(root: number): Promise<number> {
  const stats = (await Promise.all((await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map((name) => readStat(Number(name))))).filter(
    (stat): stat is ProcStat => stat !== null,
  );
  const children = new Map<number, ProcStat[]>();
  for (const stat of stats) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), stat]);
  let ticks = 0;
  const rootStat = stats.find((stat) => stat.pid === root);
  if (!rootStat) return 0;
  const queue = [rootStat];
  while (queue.length > 0) {
    const stat = queue.pop()!;
    ticks += stat.ticks;
    queue.push(...(children.get(stat.pid) ?? []));
  }
  return ticks / CLOCK_TICKS;
}

/** Bytes received so far on `iface`, in the network namespace of process `pid`. */
export async function receivedBytes(pid: number, iface: string): Promise<number> {
  const text = await readFile(`/proc/${pid}/net/dev`, 'utf8');
  for (const line of text.split('\n')) {
    const [name, counters] = line.split(':');
    if (name?.trim() === iface) return Number(counters.trim().split(/\s+/)[0]);
  }
  throw new Error(`no interface ${iface} in /proc/${pid}/net/dev`);
}

/**
 * CPU seconds of each thread of process `pid`, summed by thread name (`comm`: Node's main
 * thread is "main", libuv's pool "libuv-worker", V8's helpers "V8 DefaultWorke"…; Node 20 names
 * none, so its other threads are all "node"), plus "(kernel)", the system time of them all: where a
 * receiver's time goes beyond what a JS profile of its main thread shows (file I/O, GC helpers).
 */
export async function threadCpuSeconds(pid: number): Promise<Record<string, number>> {
  const byName: Record<string, number> = {};
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    try {
      const text = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Node 20 names none of its threads, so its main thread is told apart by its id.
      const name = tid === String(pid) ? 'main' : text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      byName[name] = (byName[name] ?? 0) + (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
      // Kernel time of all threads (system calls: socket reads, file writes), counted apart too.
      byName['(kernel)'] = (byName['(kernel)'] ?? 0) + Number(fields[12]) / CLOCK_TICKS;
    } catch {
      // the thread ended
    }
  }
  return byName;
}
