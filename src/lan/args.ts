import { resolve } from 'node:path';

/** What `nearsync peer …` was asked to do, after strict parsing. */
export interface PeerOptions {
  server: string;
  /** The share link (or bare invite) to join with; needed only on the first run. */
  invite: string | null;
  /** The synced folder (absolute). In cache-only mode it only names the default state dir. */
  dir: string;
  /** Where tokens, the database and the block cache live (absolute). */
  stateDir: string;
  cacheOnly: boolean;
  lan: boolean;
  /** UDP port of LAN discovery (used with --lan). */
  port: number;
  /** TCP port of the LAN block service; 0 picks a free one (the adverts carry the real one). */
  tcpPort: number;
  /** Where adverts are sent; null: the broadcast address of every IPv4 LAN interface. */
  lanBroadcast: string | null;
}

export type ParsedCommand = { kind: 'help' } | { kind: 'peer'; options: PeerOptions };

export const DEFAULT_LAN_PORT = 17600;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = `Usage: nearsync peer --server URL --invite LINK --dir PATH [options]

Keeps the folder PATH in sync with a nearsync workspace, both ways.

Required:
  --server URL     the nearsync server, e.g. https://files.example.com
  --invite LINK    the workspace's share link (or its 22-character invite);
                   needed the first time only: the member token is kept in the state dir
  --dir PATH       the folder to keep in sync (created if missing)

Options:
  --state DIR      where the token, sync state and block cache live
                   (default: PATH.nearsync beside the folder; never inside the sync)
  --cache-only     keep every block of every live file without writing files into PATH:
                   an on-premises cache for the peers around it
  --lan            take part in LAN discovery and serve blocks to LAN peers
  --port N         UDP port of LAN discovery for --lan (default ${DEFAULT_LAN_PORT})
  --tcp-port N     TCP port of the LAN block service (default: the --port number;
                   0 picks a free port, which the adverts then carry)
  --lan-broadcast ADDR
                   send adverts to this IPv4 address only (default: the broadcast
                   address of every IPv4 network interface except loopback)
  -h, --help       show this text

Stop with Ctrl-C (SIGINT) or SIGTERM; a restart resumes where it stopped.`;

const VALUE_FLAGS = new Set(['--server', '--invite', '--dir', '--state', '--port', '--tcp-port', '--lan-broadcast']);
const BOOLEAN_FLAGS = new Set(['--cache-only', '--lan']);

/** Parses `argv` after the program name (e.g. ["peer", "--server", …]). Throws UsageError. */
export function parseCommand(argv: readonly string[], cwd = process.cwd()): ParsedCommand {
  if (argv.length === 0) throw new UsageError('missing command (try: nearsync peer --help)');
  const [command, ...rest] = argv;
  if (command === '-h' || command === '--help' || command === 'help') return { kind: 'help' };
  if (command !== 'peer') throw new UsageError(`unknown command "${command}" (the only command is "peer")`);

  const values = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < rest.length; i++) {
    let arg = rest[i];
    if (arg === '-h' || arg === '--help') return { kind: 'help' };
    let inline: string | null = null;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      inline = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (VALUE_FLAGS.has(arg)) {
      if (values.has(arg)) throw new UsageError(`${arg} given twice`);
      const value = inline ?? rest[++i];
      if (value === undefined || (inline === null && value.startsWith('--'))) throw new UsageError(`${arg} needs a value`);
      if (value === '') throw new UsageError(`${arg} must not be empty`);
      values.set(arg, value);
    } else if (BOOLEAN_FLAGS.has(arg)) {
      if (inline !== null) throw new UsageError(`${arg} takes no value`);
      if (flags.has(arg)) throw new UsageError(`${arg} given twice`);
      flags.add(arg);
    } else {
      throw new UsageError(`unknown option "${rest[i]}"`);
    }
  }

  const server = parseServerUrl(values.get('--server'));
  const dirArg = values.get('--dir');
  if (dirArg === undefined) throw new UsageError('--dir PATH is required');
  const dir = stripTrailingSlashes(resolve(cwd, dirArg));
  if (dir === '/') throw new UsageError('--dir must not be the root directory');
  const stateArg = values.get('--state');
  const stateDir = stateArg === undefined ? `${dir}.nearsync` : stripTrailingSlashes(resolve(cwd, stateArg));
  if (isInside(stateDir, dir) || stateDir === dir) {
    throw new UsageError('--state must not be PATH or inside it (the state dir is never synced)');
  }
  if (isInside(dir, stateDir)) throw new UsageError('--dir must not be inside the state dir');
  const port = parsePort(values.get('--port'), '--port', 1) ?? DEFAULT_LAN_PORT;
  const tcpPort = parsePort(values.get('--tcp-port'), '--tcp-port', 0) ?? port;
  const broadcastText = values.get('--lan-broadcast');
  if (broadcastText !== undefined && !isIpv4(broadcastText)) throw new UsageError('--lan-broadcast must be an IPv4 address such as 192.168.1.255');
  return {
    kind: 'peer',
    options: {
      server,
      invite: values.get('--invite') ?? null,
      dir,
      stateDir,
      cacheOnly: flags.has('--cache-only'),
      lan: flags.has('--lan'),
      port,
      tcpPort,
      lanBroadcast: broadcastText ?? null,
    },
  };
}

function parsePort(text: string | undefined, flag: string, min: 0 | 1): number | undefined {
  if (text === undefined) return undefined;
  const value = /^(0|[1-9][0-9]{0,4})$/.test(text) ? Number(text) : -1;
  if (value < min || value > 65535) throw new UsageError(`${flag} must be a whole number from ${min} to 65535`);
  return value;
}

function isIpv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((part) => /^(0|[1-9][0-9]{0,2})$/.test(part) && Number(part) <= 255);
}

function parseServerUrl(text: string | undefined): string {
  if (text === undefined) throw new UsageError('--server URL is required');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--server "${text}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('--server must be an http:// or https:// URL');
  if (url.username || url.password) throw new UsageError('--server must not carry a user name or password');
  if (url.search || url.hash) throw new UsageError('--server must not carry a query or fragment');
  // The API client appends "/api/v1/…" to this base.
  return url.origin + url.pathname.replace(/\/+$/, '');
}

function stripTrailingSlashes(path: string): string {
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

function isInside(child: string, parent: string): boolean {
  return child.startsWith(parent.endsWith('/') ? parent : `${parent}/`);
}
