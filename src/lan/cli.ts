/**
 * `nearsync peer --server URL --invite LINK --dir PATH [--state DIR] [--cache-only] [--lan] [--port N] [--tcp-port N] [--lan-broadcast ADDR]`:
 * the native peer. Output is plain lines on stdout; problems go to stderr.
 */
import { join } from 'node:path';
import { USAGE, UsageError, parseCommand, type PeerOptions } from './args.ts';
import { broadcastAddresses } from './broadcast-addresses.ts';
import { PeerDaemon } from './daemon.ts';
import { LanIdentity } from './lan-identity.ts';
import { fetchLanKeyWithRetry } from './lan-key-retry.ts';
import { LanPeering } from './lan-peering.ts';
import { LAN_STATUS_FILE, LanStatusFile, type LanStatusPending } from './lan-status.ts';
import { ensureMembership, prepareStateDir } from './membership.ts';

const log = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

async function runPeer(options: PeerOptions): Promise<void> {
  await prepareStateDir(options.stateDir);
  log(`state dir ${options.stateDir}`);
  const membership = await ensureMembership(options.stateDir, options.server, options.invite, log);
  const daemon = await PeerDaemon.open({
    membership,
    dir: options.dir,
    stateDir: options.stateDir,
    cacheOnly: options.cacheOnly,
    log,
    ...tuningFromEnvironment(),
  });

  const lan = options.lan ? new LanSide(daemon, options) : null;
  let stopping: Promise<void> | null = null;
  const stop = (signal: string) => {
    if (stopping) {
      log(`${signal} again: exiting now`);
      process.exit(130);
    }
    log(`${signal}: stopping`);
    stopping = (lan?.close() ?? Promise.resolve()).then(() => daemon.stop()).then(
      () => log('stopped'),
      (error: unknown) => {
        process.stderr.write(`nearsync peer: stopping failed: ${(error as Error).message}\n`);
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  // Before the engine starts: a LAN peer found in the first moments takes the initial
  // download off the server (the scheduler prefers peers that claim a block).
  if (lan && (await lan.start()) && !(await lan.waitForPeer(LAN_DISCOVERY_WAIT_MS))) {
    log(`LAN: no peer ahead of us yet; fetching from the server meanwhile`);
  }
  // Stopped while looking for LAN peers: the engine must not start on a closed state store.
  if (stopping) return;
  await daemon.start();
  log(options.cacheOnly ? `caching workspace "${membership.name}"` : `syncing workspace "${membership.name}" with ${options.dir}`);
}

/** How long a --lan daemon listens for peers before its engine starts fetching. */
const LAN_DISCOVERY_WAIT_MS = 1_500;

/**
 * The daemon's LAN side: the LAN key (retried with backoff while the server cannot give it;
 * the daemon syncs over HTTP meanwhile), the peer id kept in the state dir, LAN peering
 * once the key is there, and `<state>/lan-status.json`.
 */
class LanSide {
  private peering: LanPeering | null = null;
  private identity: LanIdentity | null = null;
  private readonly abort = new AbortController();
  private readonly status: LanStatusFile;
  private pending: LanStatusPending = { lan: 'waiting_for_key', keyAttempts: 0, lastError: '', nextAttemptAt: '' };
  private sequenceKeeper: NodeJS.Timeout | null = null;

  constructor(
    private readonly daemon: PeerDaemon,
    private readonly options: PeerOptions,
  ) {
    this.status = new LanStatusFile(options.stateDir, () => (this.peering ? { lan: 'on', ...this.peering.status() } : this.pending));
  }

  /** Tries the LAN key once and starts peering with it; on failure keeps trying in the background. Says whether peering runs. */
  async start(): Promise<boolean> {
    this.identity = await LanIdentity.load(this.options.stateDir, log);
    this.status.start();
    const tuning = lanTuningFromEnvironment();
    let firstFailed!: () => void;
    const firstFailure = new Promise<null>((resolve) => (firstFailed = () => resolve(null)));
    const key = fetchLanKeyWithRetry({
      fetchKey: () => this.daemon.api.lanKey(this.daemon.ns),
      signal: this.abort.signal,
      firstDelayMs: tuning.keyRetryMs,
      onFailure: (attempt, error, delayMs) => {
        this.pending = { lan: 'waiting_for_key', keyAttempts: attempt, lastError: error.message, nextAttemptAt: new Date(Date.now() + delayMs).toISOString() };
        log(`LAN: could not get the workspace's LAN key (${error.message}); trying again in ${Math.max(1, Math.round(delayMs / 1000))} s, syncing over HTTP meanwhile`);
        firstFailed();
      },
    });
    const first = await Promise.race([key.catch(() => null), firstFailure]);
    if (first) {
      await this.startPeering(first, tuning.idleMs);
      return true;
    }
    key.then(
      (lanKey) => this.startPeering(lanKey, tuning.idleMs),
      () => undefined, // aborted: the daemon is stopping
    ).catch((error: Error) => process.stderr.write(`nearsync peer: LAN off: ${error.message}\n`));
    return false;
  }

  waitForPeer(timeoutMs: number): Promise<boolean> {
    return this.peering?.waitForPeer(timeoutMs) ?? Promise.resolve(false);
  }

  async close(): Promise<void> {
    this.abort.abort(new Error('stopping'));
    if (this.sequenceKeeper) clearInterval(this.sequenceKeeper);
    const peering = this.peering;
    this.peering = null;
    await peering?.close();
    await this.status.close();
  }

  private async startPeering(lanKey: Uint8Array, idleTimeoutMs: number | undefined): Promise<void> {
    if (this.abort.signal.aborted) return;
    const identity = this.identity!;
    const peering = new LanPeering({
      host: this.daemon,
      lanKey,
      udpPort: this.options.port,
      tcpPort: this.options.tcpPort,
      broadcastAddresses: this.options.lanBroadcast ? [this.options.lanBroadcast] : broadcastAddresses(),
      log,
      peerId: identity.peerId,
      firstSequence: identity.firstSequence,
      idleTimeoutMs,
    });
    await peering.start();
    if (this.abort.signal.aborted) return peering.close();
    this.peering = peering;
    log(`LAN: peer id ${identity.peerIdHex}; status in ${join(this.options.stateDir, LAN_STATUS_FILE)}`);
    this.sequenceKeeper = setInterval(() => void identity.keepAhead(peering.lastAdvertSequence).catch(() => undefined), 1_000);
    this.sequenceKeeper.unref();
    void this.status.flush();
  }
}

/** Test and operator knobs that are not worth flags: the folder rescan period and debounce, the block GC. */
function tuningFromEnvironment(): { rescanMs?: number; debounceMs?: number; longPollSeconds?: number; blockGcMs?: number; blockGraceMs?: number } {
  return {
    rescanMs: environmentNumber('NEARSYNC_RESCAN_MS', 100, 3_600_000),
    debounceMs: environmentNumber('NEARSYNC_DEBOUNCE_MS', 0, 60_000),
    longPollSeconds: environmentNumber('NEARSYNC_LONG_POLL_SECONDS', 1, 60),
    blockGcMs: environmentNumber('NEARSYNC_BLOCK_GC_MS', 0, 604_800_000),
    blockGraceMs: environmentNumber('NEARSYNC_BLOCK_GRACE_MS', 0, 604_800_000),
  };
}

/** LAN knobs: idle time before a LAN link is closed (0: never), first wait before asking for the LAN key again. */
function lanTuningFromEnvironment(): { idleMs?: number; keyRetryMs?: number } {
  return {
    idleMs: environmentNumber('NEARSYNC_LAN_IDLE_MS', 0, 86_400_000),
    keyRetryMs: environmentNumber('NEARSYNC_LAN_KEY_RETRY_MS', 100, 600_000),
  };
}

function environmentNumber(name: string, min: number, max: number): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new UsageError(`${name} must be a whole number from ${min} to ${max}`);
  return value;
}

async function main(argv: readonly string[]): Promise<void> {
  let command;
  try {
    command = parseCommand(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`nearsync: ${error.message}\n(see: nearsync peer --help)\n`);
    process.exitCode = 2;
    return;
  }
  if (command.kind === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  try {
    await runPeer(command.options);
  } catch (error) {
    process.stderr.write(`nearsync peer: ${(error as Error).message}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  }
}

await main(process.argv.slice(2));
