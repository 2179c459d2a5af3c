import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { spawnInNamespace, stopProcess, type Netns } from '../../netns/netns.ts';

/** Starts and watches `lying-peer.ts` inside a test's network namespace. */

const SCRIPT = fileURLToPath(new URL('./lying-peer.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface LyingPeerEvent {
  event: string;
  peerId?: string;
  hash?: string;
  count?: number;
  [key: string]: unknown;
}

export interface LyingPeer {
  /** The relay's id for the lying peer (from its `ready` line). */
  readonly peerId: string;
  /** Every line it printed so far, parsed. */
  readonly events: readonly LyingPeerEvent[];
  /** Hashes of the REQUEST frames it received, in order. */
  requests(): string[];
  /** How many corrupted blocks it handed to its links to send. */
  lies(): number;
  /** Resolves with the first event matching `predicate` (already seen or yet to come). */
  waitFor(predicate: (event: LyingPeerEvent) => boolean, timeoutMs?: number): Promise<LyingPeerEvent>;
  /** Its stderr (the last few KiB), for failure messages. */
  stderr(): string;
  /** Closes its stdin, then SIGTERM, then SIGKILL; resolves once it exited. Idempotent. */
  stop(): Promise<void>;
}

export interface LyingPeerOptions {
  /** The server as seen from inside the namespace (http://localhost:P). */
  origin: string;
  token: string;
  namespaceId: string;
  label?: string;
  /** Also claim (FETCHING) to be fetching every block from the server, never sending HAVE. */
  claimFetching?: boolean;
  /** Flip the byte at this offset of each block (default: the middle one). */
  flipAt?: number;
  /** Send true bytes, but none at or past this offset of a block, and never END. */
  stallAfter?: number;
  readyTimeoutMs?: number;
}

export async function startLyingPeer(ns: Netns, options: LyingPeerOptions): Promise<LyingPeer> {
  const child: ChildProcess = spawnInNamespace(ns, process.execPath, ['--import', 'tsx', SCRIPT], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      ...process.env,
      NEARSYNC_ORIGIN: options.origin,
      NEARSYNC_TOKEN: options.token,
      NEARSYNC_NS: options.namespaceId,
      NEARSYNC_LABEL: options.label ?? 'Lying peer',
      NEARSYNC_CLAIM_FETCHING: options.claimFetching ? '1' : '0',
      ...(options.flipAt !== undefined ? { NEARSYNC_FLIP_AT: String(options.flipAt) } : {}),
      ...(options.stallAfter !== undefined ? { NEARSYNC_STALL_AFTER: String(options.stallAfter) } : {}),
    },
  });
  const events: LyingPeerEvent[] = [];
  const watchers = new Set<() => void>();
  let stderr = '';
  let partial = '';
  let exited: string | null = null;
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8_000);
  });
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        events.push(JSON.parse(line) as LyingPeerEvent);
      } catch {
        stderr = (stderr + `unparsed stdout: ${line}\n`).slice(-8_000);
      }
    }
    for (const watcher of [...watchers]) watcher();
  });
  child.once('exit', (code, signal) => {
    exited = `exited (${code ?? signal})`;
    for (const watcher of [...watchers]) watcher();
  });
  // A test process that dies closes this pipe, and the lying peer exits with it.
  child.stdin!.on('error', () => undefined);

  const waitFor = (predicate: (event: LyingPeerEvent) => boolean, timeoutMs = 30_000) =>
    new Promise<LyingPeerEvent>((resolve, reject) => {
      const check = () => {
        const found = events.find(predicate);
        if (found) return finish(() => resolve(found));
        if (exited) finish(() => reject(new Error(`lying peer ${exited} before the awaited event: ${stderr}`)));
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(`lying peer: awaited event did not come in ${timeoutMs} ms; stderr: ${stderr}`))),
        timeoutMs,
      );
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        watchers.delete(check);
        settle();
      };
      watchers.add(check);
      check();
    });

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      child.stdin!.end();
      await stopProcess(child, 3_000);
    })());

  try {
    const ready = await waitFor((event) => event.event === 'ready', options.readyTimeoutMs ?? 60_000);
    const peerId = String(ready.peerId);
    return {
      peerId,
      events,
      requests: () => events.filter((event) => event.event === 'request').map((event) => String(event.hash)),
      lies: () => events.filter((event) => event.event === 'lie').length,
      waitFor,
      stderr: () => stderr,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
