/**
 * `nearsync peer --server URL --invite LINK --dir PATH [--state DIR] [--cache-only] [--lan] [--port N] [--tcp-port N] [--lan-broadcast ADDR]`:
 * the native peer. Output is plain lines on stdout; problems go to stderr.
 */
import { USAGE, UsageError, parseCommand, type PeerOptions } from './args.ts';
import { broadcastAddresses } from './broadcast-addresses.ts';
import { PeerDaemon } from './daemon.ts';
import { LanPeering } from './lan-peering.ts';
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

  let lan: LanPeering | null = null;
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

  if (options.lan) {
    // Before the engine starts: a LAN peer found in the first moments takes the initial
    // download off the server (the scheduler prefers peers that claim a block).
    lan = await startLan(daemon, options);
    if (lan && !(await lan.waitForPeer(LAN_DISCOVERY_WAIT_MS))) log(`LAN: no peer ahead of us yet; fetching from the server meanwhile`);
  }
  await daemon.start();
  log(options.cacheOnly ? `caching workspace "${membership.name}"` : `syncing workspace "${membership.name}" with ${options.dir}`);
}

/** How long a --lan daemon listens for peers before its engine starts fetching. */
const LAN_DISCOVERY_WAIT_MS = 1_500;

/** Starts LAN peering; without the LAN key (server unreachable) the daemon runs without it. */
async function startLan(daemon: PeerDaemon, options: PeerOptions): Promise<LanPeering | null> {
  let lanKey: Uint8Array;
  try {
    lanKey = await daemon.api.lanKey(daemon.ns);
  } catch (error) {
    process.stderr.write(`nearsync peer: LAN off: could not get the workspace's LAN key: ${(error as Error).message}\n`);
    return null;
  }
  const peering = new LanPeering({
    host: daemon,
    lanKey,
    udpPort: options.port,
    tcpPort: options.tcpPort,
    broadcastAddresses: options.lanBroadcast ? [options.lanBroadcast] : broadcastAddresses(),
    log,
  });
  await peering.start();
  return peering;
}

/** Test and operator knobs that are not worth flags: the folder rescan period and debounce. */
function tuningFromEnvironment(): { rescanMs?: number; debounceMs?: number; longPollSeconds?: number } {
  const number = (name: string, min: number, max: number): number | undefined => {
    const text = process.env[name];
    if (text === undefined || text === '') return undefined;
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max) throw new UsageError(`${name} must be a whole number from ${min} to ${max}`);
    return value;
  };
  return {
    rescanMs: number('NEARSYNC_RESCAN_MS', 100, 3_600_000),
    debounceMs: number('NEARSYNC_DEBOUNCE_MS', 0, 60_000),
    longPollSeconds: number('NEARSYNC_LONG_POLL_SECONDS', 1, 60),
  };
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
