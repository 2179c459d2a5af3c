import { spawn, execFile, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

/**
 * Linux network namespaces for tests that need real, non-loopback networking (WebRTC in
 * Chromium gathers no host candidates with loopback only).
 *
 * Each namespace gets a veth pair: the host end and the namespace end carry the two
 * usable addresses of a private /30 in 10.213.0.0/16, and the namespace's default route
 * points at the host end. Packets arriving on the host end are never forwarded (IPv4
 * forwarding is switched off on that interface, IPv6 is disabled on both ends), so
 * nothing in the namespace can reach the machine's real interfaces or beyond: the
 * namespace sees its own loopback, its veth, and the host end of that veth.
 *
 * Names carry the creating process id (`nsync-<pid>-<n>`, veths `nsy<pid>h<n>` and
 * `nsy<pid>n<n>`), so namespaces left behind by a killed run are recognised and removed
 * by the next one (`cleanStaleNamespaces`) while those of a live concurrent run are kept.
 */

const execFileAsync = promisify(execFile);

const NAME_PREFIX = 'nsync-';
const NS_NAME = /^nsync-(\d+)-(\d+)$/;
const VETH_NAME = /^nsy(\d+)[hn](\d+)$/;
/** 10.213.0.0/16 carved into /30 blocks: X.Y with X picked from the pid. */
const SUBNET_SECOND_OCTETS = [10, 213] as const;

const TCP_FORWARDER = fileURLToPath(new URL('./tcp-forwarder.mjs', import.meta.url));

export class NetnsUnavailableError extends Error {
  override name = 'NetnsUnavailableError';
}

export interface NetnsSupport {
  /** Whether namespaces can be made here (root and `ip` present). */
  ok: boolean;
  isRoot: boolean;
  /** Absolute path of `ip`, when found. */
  ipPath: string | null;
  /** Why not, when !ok. */
  reason?: string;
}

const IP_CANDIDATES = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'];

function findIp(): string | null {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean);
  for (const path of [...dirs.map((dir) => join(dir, 'ip')), ...IP_CANDIDATES]) {
    try {
      accessSync(path, fsConstants.X_OK);
      return path;
    } catch {
      // next
    }
  }
  return null;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Cheap, synchronous: is this process root, and is iproute2's `ip` installed? */
export function netnsSupport(): NetnsSupport {
  const root = isRoot();
  const ipPath = findIp();
  if (process.platform !== 'linux') return { ok: false, isRoot: root, ipPath, reason: 'network namespaces need Linux' };
  if (!root) return { ok: false, isRoot: root, ipPath, reason: 'network namespaces need root (uid 0)' };
  if (!ipPath) {
    return { ok: false, isRoot: root, ipPath, reason: '`ip` (iproute2) is not installed: apt-get install -y iproute2' };
  }
  return { ok: true, isRoot: root, ipPath };
}

/** Throws a NetnsUnavailableError saying what is missing, or returns the path of `ip`. */
export function assertNetnsSupport(): string {
  const support = netnsSupport();
  if (!support.ok) throw new NetnsUnavailableError(`cannot create network namespaces: ${support.reason}`);
  return support.ipPath!;
}

async function run(file: string, args: string[], options: { input?: string } = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync(file, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, ...options });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`${file} ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

async function ip(args: string[]): Promise<string> {
  return run(assertNetnsSupport(), args);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes namespaces (and host-side veths) named by this module whose creating process is
 * gone. Processes still running inside such a namespace are left alone (it only loses its
 * name and its veth). Returns the names removed.
 */
export async function cleanStaleNamespaces(): Promise<string[]> {
  const removed: string[] = [];
  const listing = await ip(['netns', 'list']);
  for (const line of listing.split('\n')) {
    const name = line.trim().split(/\s+/)[0];
    const match = name ? NS_NAME.exec(name) : null;
    if (!match || pidAlive(Number(match[1]))) continue;
    await ip(['netns', 'delete', name]).catch(() => undefined);
    removed.push(name);
  }
  const links = await ip(['-o', 'link', 'show']);
  for (const line of links.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    const match = name ? VETH_NAME.exec(name) : null;
    if (!match || pidAlive(Number(match[1]))) continue;
    await ip(['link', 'delete', name!]).catch(() => undefined);
    removed.push(name!);
  }
  return removed;
}

export interface Netns {
  /** e.g. nsync-1234-0 */
  readonly name: string;
  /** The veth end in the host namespace, and its address (the namespace's default gateway). */
  readonly hostInterface: string;
  readonly hostAddress: string;
  /** The veth end inside the namespace, and its address (what WebRTC host candidates carry). */
  readonly nsInterface: string;
  readonly nsAddress: string;
  /** The /30's broadcast address: where LAN tests send adverts, so they reach only this pair. */
  readonly broadcastAddress: string;
  readonly prefixLength: 30;
  /** Runs a command inside the namespace to completion; resolves with its stdout. */
  exec(command: string, args?: string[]): Promise<string>;
  /** Starts a process inside the namespace (see `spawnInNamespace`). */
  spawn(command: string, args?: string[], options?: SpawnOptions): ChildProcess;
  /** Deletes the veth pair and the namespace. Kill the processes you started inside first. */
  close(): Promise<void>;
}

let namespaceCounter = 0;

/** Every /30 of 10.213.0.0/16 that overlaps an address or route already on the host. */
async function usedSubnets(): Promise<Set<string>> {
  const used = new Set<string>();
  const text = (await ip(['-4', '-o', 'addr', 'show'])) + '\n' + (await ip(['-4', 'route', 'show', 'table', 'all']));
  for (const m of text.matchAll(/\b10\.213\.(\d+)\.(\d+)(?:\/(\d+))?/g)) {
    const third = Number(m[1]);
    const fourth = Number(m[2]);
    const prefix = m[3] ? Number(m[3]) : 32;
    if (prefix >= 30) {
      used.add(`${third}.${fourth & ~3}`);
    } else if (prefix >= 24) {
      const size = 2 ** (32 - prefix);
      const start = fourth & ~(size - 1);
      for (let f = start; f < start + size; f += 4) used.add(`${third}.${f}`);
    } else {
      // A route covering whole third octets (or all of 10.213/16): do not squeeze in beside it.
      const span = 2 ** (24 - prefix);
      const start = third & ~(span - 1);
      for (let t = start; t < start + span && t < 256; t++) for (let f = 0; f < 256; f += 4) used.add(`${t}.${f}`);
    }
  }
  return used;
}

async function pickSubnet(n: number): Promise<{ third: number; fourth: number }> {
  const used = await usedSubnets();
  const startThird = process.pid % 256;
  const startSlot = n % 64;
  for (let i = 0; i < 256 * 64; i++) {
    const slot = (startThird * 64 + startSlot + i) % (256 * 64);
    const third = Math.floor(slot / 64);
    const fourth = (slot % 64) * 4;
    if (!used.has(`${third}.${fourth}`)) return { third, fourth };
  }
  throw new Error('no free /30 left in 10.213.0.0/16');
}

/**
 * Creates a namespace with loopback up and a veth pair to the host with a default route
 * through it. On any failure, whatever was created is removed again.
 */
export async function createNamespace(): Promise<Netns> {
  const ipPath = assertNetnsSupport();
  const n = namespaceCounter++;
  const name = `${NAME_PREFIX}${process.pid}-${n}`;
  const hostInterface = `nsy${process.pid}h${n}`;
  const nsInterface = `nsy${process.pid}n${n}`;
  if (hostInterface.length > 15) throw new Error(`interface name ${hostInterface} is longer than 15 characters`);
  const { third, fourth } = await pickSubnet(n);
  const base = `${SUBNET_SECOND_OCTETS.join('.')}.${third}`;
  const hostAddress = `${base}.${fourth + 1}`;
  const nsAddress = `${base}.${fourth + 2}`;
  const broadcastAddress = `${base}.${fourth + 3}`;

  const undo: (() => Promise<unknown>)[] = [];
  const closeAll = async () => {
    // Deleting the host end removes the pair at once; `ip netns delete` alone frees the
    // veth only when the kernel gets round to destroying the namespace.
    while (undo.length > 0) await undo.pop()!().catch(() => undefined);
  };
  try {
    await ip(['netns', 'add', name]);
    undo.push(() => ip(['netns', 'delete', name]));
    await ip(['link', 'add', hostInterface, 'type', 'veth', 'peer', 'name', nsInterface]);
    undo.push(() => ip(['link', 'delete', hostInterface]));
    // Never route anything that arrives from the namespace onwards, whatever the host's
    // global forwarding setting; and keep IPv6 (router solicitations, link-local) off the pair.
    await writeFile(`/proc/sys/net/ipv4/conf/${hostInterface}/forwarding`, '0');
    await writeFile(`/proc/sys/net/ipv6/conf/${hostInterface}/disable_ipv6`, '1').catch(() => undefined);
    await ip(['link', 'set', nsInterface, 'netns', name]);
    await ip(['addr', 'add', `${hostAddress}/30`, 'dev', hostInterface]);
    await ip(['link', 'set', hostInterface, 'up']);
    await ip(['-n', name, 'link', 'set', 'lo', 'up']);
    await run(ipPath, ['netns', 'exec', name, 'sh', '-c', `echo 1 > /proc/sys/net/ipv6/conf/${nsInterface}/disable_ipv6`]).catch(
      () => undefined,
    );
    await ip(['-n', name, 'addr', 'add', `${nsAddress}/30`, 'dev', nsInterface]);
    await ip(['-n', name, 'link', 'set', nsInterface, 'up']);
    await ip(['-n', name, 'route', 'add', 'default', 'via', hostAddress]);
  } catch (error) {
    await closeAll();
    throw error;
  }

  let closed = false;
  const ns: Netns = {
    name,
    hostInterface,
    hostAddress,
    nsInterface,
    nsAddress,
    broadcastAddress,
    prefixLength: 30,
    exec: (command, args = []) => run(ipPath, ['netns', 'exec', name, command, ...args]),
    spawn: (command, args = [], options = {}) => spawnInNamespace(ns, command, args, options),
    async close() {
      if (closed) return;
      closed = true;
      await closeAll();
    },
  };
  return ns;
}

/** Starts `command args` inside the namespace (through `ip netns exec`, which execs in place). */
export function spawnInNamespace(
  ns: Netns | string,
  command: string,
  args: string[] = [],
  options: SpawnOptions = {},
): ChildProcess {
  const name = typeof ns === 'string' ? ns : ns.name;
  return spawn(assertNetnsSupport(), ['netns', 'exec', name, command, ...args], options);
}

/** Sends SIGTERM (then SIGKILL after `graceMs`) and waits for the process to exit. */
export async function stopProcess(child: ChildProcess, graceMs = 3_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export interface TcpForwarder {
  readonly listenPort: number;
  readonly target: string;
  close(): Promise<void>;
}

/**
 * A TCP forwarder inside the namespace: connections to 127.0.0.1:<listenPort> (and
 * [::1]:<listenPort>) there are piped to <targetHost>:<targetPort>, typically the host end
 * of the veth where a server of the test process listens. So a page in the namespace opens
 * http://localhost:<port>, a secure context, while the server runs in the test process.
 */
export async function startTcpForwarder(
  ns: Netns,
  options: { listenPort: number; targetHost: string; targetPort?: number },
): Promise<TcpForwarder> {
  const targetPort = options.targetPort ?? options.listenPort;
  const target = `${options.targetHost}:${targetPort}`;
  const child = spawnInNamespace(ns, process.execPath, [TCP_FORWARDER, String(options.listenPort), options.targetHost, String(targetPort)], {
    // stdin stays open while this process lives: the forwarder exits when it closes.
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4_000);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let stdout = '';
      const timer = setTimeout(() => reject(new Error(`TCP forwarder in ${ns.name} did not start: ${stderr}`)), 10_000);
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        if (stdout.includes('ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`TCP forwarder in ${ns.name} exited (${code ?? signal}): ${stderr}`));
      });
    });
  } catch (error) {
    await stopProcess(child);
    throw error;
  }
  return { listenPort: options.listenPort, target, close: () => stopProcess(child) };
}

/**
 * Writes an executable script that runs `executable` inside the namespace, for launchers
 * that take an executable path (playwright's `executablePath`). playwright-core talks to
 * Chromium over a pipe on inherited file descriptors, which `ip netns exec` keeps.
 */
export async function writeNamespaceWrapper(ns: Netns, dir: string, executable: string): Promise<string> {
  const ipPath = assertNetnsSupport();
  const path = join(dir, `in-${ns.name}.sh`);
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  await writeFile(path, `#!/bin/sh\nexec ${quote(ipPath)} netns exec ${quote(ns.name)} ${quote(executable)} "$@"\n`);
  await chmod(path, 0o755);
  return path;
}
