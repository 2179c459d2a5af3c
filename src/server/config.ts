import { parseIceServers, type IceServer } from '../protocol/index.ts';
import type { BackendConfig } from './backends/index.ts';

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

/** A URL with its password replaced, for error messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}
