import { isIPv4 } from 'node:net';
import { LAN_DISCOVERY_PORT, parseIceServers, type IceServer } from '../protocol/index.ts';
import { broadcastAddresses } from '../lan/broadcast-addresses.ts';
import type { BackendConfig } from './backends/index.ts';
import type { BlockGcSettings } from './gc/block-gc.ts';
import type { LanBridgeOptions } from './lan-bridge/lan-bridge.ts';

/** Reads server settings from the environment; throws a readable Error for a bad value. */
export function envPort(name: string, fallback: number, env: NodeJS.ProcessEnv = process.env): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) > 65535) throw new Error(`${name} must be a port number (0-65535), not ${JSON.stringify(text)}`);
  return Number(text);
}

/** EGRESS_MBPS (megabits per second) as bytes per second, or undefined when unset. */
export function envEgressBytesPerSecond(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const text = env.EGRESS_MBPS;
  if (text === undefined || text === '') return undefined;
  const mbps = Number(text);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text) || !(mbps > 0)) throw new Error(`EGRESS_MBPS must be a positive number, not ${JSON.stringify(text)}`);
  return (mbps * 1_000_000) / 8;
}

/** ICE_SERVERS: a JSON array of RTCIceServer-like objects for browsers; default none (host candidates only, enough on a LAN). */
export function envIceServers(env: NodeJS.ProcessEnv = process.env): IceServer[] {
  const text = env.ICE_SERVERS;
  if (text === undefined || text.trim() === '') return [];
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error('ICE_SERVERS must be a JSON array, e.g. [{"urls":"stun:stun.example.com:3478"}]');
  }
  try {
    return parseIceServers(value, 'ICE_SERVERS');
  } catch (err) {
    throw new Error(`ICE_SERVERS is not valid: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * DATABASE_URL, REDIS_URL, BLOCK_STORE and the S3 settings (S3_ENDPOINT, AWS_REGION,
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, S3_FORCE_PATH_STYLE). Each is independent; with
 * none set the server keeps everything in DATA_DIR.
 */
export function envBackends(env: NodeJS.ProcessEnv = process.env): BackendConfig {
  const text = (name: string) => (env[name] === undefined || env[name].trim() === '' ? undefined : env[name].trim());
  const databaseUrl = text('DATABASE_URL');
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new Error(`DATABASE_URL must be a postgres:// URL (unset it for the embedded SQLite), not ${JSON.stringify(redactUrl(databaseUrl))}`);
  }
  const redisUrl = text('REDIS_URL');
  if (redisUrl && !/^rediss?:\/\//.test(redisUrl)) throw new Error(`REDIS_URL must be a redis:// or rediss:// URL, not ${JSON.stringify(redactUrl(redisUrl))}`);
  const blockStore = text('BLOCK_STORE');
  if (blockStore && !/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/[^\s]*)?$/.test(blockStore)) {
    throw new Error(`BLOCK_STORE must be s3://bucket or s3://bucket/prefix (unset it for block files in DATA_DIR), not ${JSON.stringify(blockStore)}`);
  }
  const pathStyle = text('S3_FORCE_PATH_STYLE');
  if (pathStyle !== undefined && pathStyle !== '0' && pathStyle !== '1' && pathStyle !== 'true' && pathStyle !== 'false') {
    throw new Error(`S3_FORCE_PATH_STYLE must be 1/true or 0/false, not ${JSON.stringify(pathStyle)}`);
  }
  return {
    databaseUrl,
    redisUrl,
    blockStore,
    s3: blockStore
      ? {
          endpoint: text('S3_ENDPOINT'),
          region: text('AWS_REGION') ?? text('AWS_DEFAULT_REGION'),
          accessKeyId: text('AWS_ACCESS_KEY_ID'),
          secretAccessKey: text('AWS_SECRET_ACCESS_KEY'),
          forcePathStyle: pathStyle === undefined ? undefined : pathStyle === '1' || pathStyle === 'true',
        }
      : undefined,
  };
}

/**
 * The LAN bridge, on with LAN_BRIDGE=1 (or true) or `--lan` among the arguments; null (no
 * socket opened) otherwise. LAN_PORT: UDP advert port (17600); LAN_TCP_PORT: the bridge's
 * block service (0: any free port); LAN_BIND: the IPv4 address the block service listens on
 * and adverts are sent from (0.0.0.0); LAN_BROADCAST: comma-separated IPv4 broadcast
 * addresses for the adverts (default: those of every non-internal interface).
 */
export function envLanBridge(env: NodeJS.ProcessEnv = process.env, args: readonly string[] = []): LanBridgeOptions | null {
  const flag = env.LAN_BRIDGE?.trim() ?? '';
  if (!['', '0', '1', 'true', 'false'].includes(flag)) throw new Error(`LAN_BRIDGE must be 1/true or 0/false, not ${JSON.stringify(flag)}`);
  if (!(flag === '1' || flag === 'true' || args.includes('--lan'))) return null;
  const udpPort = envPort('LAN_PORT', LAN_DISCOVERY_PORT, env);
  if (udpPort === 0) throw new Error('LAN_PORT must be a port number from 1 to 65535 (LAN peers send their adverts to it)');
  const tcpPort = envPort('LAN_TCP_PORT', 0, env);
  const bind = env.LAN_BIND?.trim() || '0.0.0.0';
  if (!isIPv4(bind)) throw new Error(`LAN_BIND must be an IPv4 address of this machine (or 0.0.0.0), not ${JSON.stringify(bind)}`);
  const listed = env.LAN_BROADCAST?.trim();
  let broadcast: string[];
  if (listed) {
    broadcast = listed.split(',').map((address) => address.trim());
    const bad = broadcast.find((address) => !isIPv4(address));
    if (bad !== undefined) throw new Error(`LAN_BROADCAST must be comma-separated IPv4 broadcast addresses (e.g. 192.168.1.255), not ${JSON.stringify(bad)}`);
  } else {
    broadcast = broadcastAddresses();
  }
  return { udpPort, tcpPort, bindAddress: bind, broadcastAddresses: [...new Set(broadcast)] };
}

/**
 * Retention and block GC: HISTORY_DAYS (30; 0 keeps no old version or deleted file),
 * BLOCK_GC_GRACE_S (3600: blocks stored more recently are never removed) and
 * BLOCK_GC_INTERVAL_S (3600; 0 turns the timed passes off). Whole numbers; HISTORY_DAYS may
 * have a fraction.
 */
export function envBlockGc(env: NodeJS.ProcessEnv = process.env): BlockGcSettings {
  const read = (name: string, fallback: number, fraction: boolean, max: number): number => {
    const text = env[name]?.trim();
    if (text === undefined || text === '') return fallback;
    const pattern = fraction ? /^[0-9]{1,9}(\.[0-9]{1,6})?$/ : /^[0-9]{1,12}$/;
    const value = Number(text);
    if (!pattern.test(text) || value > max) {
      throw new Error(`${name} must be a ${fraction ? 'number' : 'whole number'} from 0 to ${max}, not ${JSON.stringify(text)}`);
    }
    return value;
  };
  const days = read('HISTORY_DAYS', 30, true, 36_500);
  const graceS = read('BLOCK_GC_GRACE_S', 3600, false, 365 * 86_400);
  const intervalS = read('BLOCK_GC_INTERVAL_S', 3600, false, 365 * 86_400);
  return { historyMs: Math.round(days * 86_400_000), graceMs: graceS * 1000, intervalMs: intervalS * 1000 };
}

/** The defaults of envBlockGc with nothing set. */
export const DEFAULT_BLOCK_GC: BlockGcSettings = { historyMs: 30 * 86_400_000, graceMs: 3_600_000, intervalMs: 3_600_000 };

/** A URL with its password replaced, for error messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}
