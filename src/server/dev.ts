import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'vite';
import { startServer } from './app.ts';
import { envPort } from './config.ts';
import { createLogger, parseLogLevel } from './log.ts';

/**
 * `npm run dev`: the API on 127.0.0.1:API_PORT (8081) and Vite's dev server on PORT (5173),
 * which proxies /api to the API (vite.config.ts).
 */
async function main(): Promise<void> {
  const env = process.env;
  const logger = createLogger(parseLogLevel(env.LOG_LEVEL));
  const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
  const apiPort = envPort('API_PORT', 8081);
  const dataDir = env.DATA_DIR || './data';
  process.env.API_PORT = String(apiPort); // read by vite.config.ts for the proxy target

  const api = await startServer({ host: '127.0.0.1', port: apiPort, dataDir, staticDir: null, logger, publicUrl: env.PUBLIC_URL || undefined });
  const vite = await createServer({
    configFile: join(repoRoot, 'vite.config.ts'),
    root: repoRoot,
    server: { port: envPort('PORT', 5173), strictPort: true },
  });
  await vite.listen();
  console.log(`nearsync API on ${api.url} (data: ${dataDir})`);
  vite.printUrls();

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    Promise.all([vite.close(), api.close()]).then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err) => {
  console.error(`nearsync dev: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
