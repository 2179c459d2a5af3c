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
