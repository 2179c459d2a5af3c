import { parseIceServers, type IceServer } from '../protocol/index.ts';

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
