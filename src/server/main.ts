import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './app.ts';
import { envBackends, envBlockGc, envEgressBytesPerSecond, envIceServers, envLanBridge, envPort } from './config.ts';
import { createLogger, parseLogLevel } from './log.ts';

/**
 * `npm start`: the API plus the built web app (dist/). Settings from the environment:
 * PORT (8080), HOST (0.0.0.0), DATA_DIR (./data), PUBLIC_URL, TLS_CERT + TLS_KEY (PEM
 * files: serve HTTPS), EGRESS_MBPS (pace block downloads), ICE_SERVERS (JSON array of
 * RTCIceServer-like objects for browsers; default none), LOG_LEVEL (info), and the scale-out
 * engines (README "Scaling out"): DATABASE_URL, REDIS_URL, BLOCK_STORE with S3_ENDPOINT,
 * AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, S3_FORCE_PATH_STYLE; retention and
 * block GC (HISTORY_DAYS, BLOCK_GC_GRACE_S, BLOCK_GC_INTERVAL_S); and the LAN
 * bridge (`--lan` or LAN_BRIDGE=1, with LAN_PORT, LAN_TCP_PORT, LAN_BIND, LAN_BROADCAST).
 */
async function main(): Promise<void> {
  const env = process.env;
  const args = process.argv.slice(2);
  const unknown = args.find((arg) => arg !== '--lan');
  if (unknown !== undefined) throw new Error(`unknown argument ${JSON.stringify(unknown)} (the server takes only --lan; everything else is set in the environment)`);
  const lanBridge = envLanBridge(env, args);
  const logger = createLogger(parseLogLevel(env.LOG_LEVEL));
  const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
  const dataDir = env.DATA_DIR || './data';
  const distDir = join(repoRoot, 'dist');
  const staticDir = existsSync(join(distDir, 'index.html')) ? distDir : null;
  if (!staticDir) logger.warn('no built web app in dist/ (run `npm run build`); serving the API only', { distDir });

  if (Boolean(env.TLS_CERT) !== Boolean(env.TLS_KEY)) throw new Error('set both TLS_CERT and TLS_KEY, or neither');
  const tls = env.TLS_CERT && env.TLS_KEY ? { cert: readFileSync(env.TLS_CERT), key: readFileSync(env.TLS_KEY) } : undefined;

  const server = await startServer({
    host: env.HOST || '0.0.0.0',
    port: envPort('PORT', 8080),
    dataDir,
    backends: envBackends(),
    blockGc: envBlockGc(),
    staticDir,
    publicUrl: env.PUBLIC_URL || undefined,
    egressBytesPerSecond: envEgressBytesPerSecond(),
    iceServers: envIceServers(),
    lanBridge,
    tls,
    logger,
  });
  console.log(`nearsync listening on ${server.url} (data: ${dataDir})`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    server.close().then(
      () => process.exit(0),
      (err) => {
        logger.error('shutdown failed', { err });
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err) => {
  console.error(`nearsync: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
