import { createServer } from 'node:net';
import type { ServerMetrics } from '../../src/protocol/index.ts';
import { startServer, type RunningServer, type ServerOptions } from '../../src/server/app.ts';
import type { BackendConfig } from '../../src/server/backends/index.ts';
import { silentLogger } from '../../src/server/log.ts';
import { makeTempDir, runCleanups } from '../e2e/harness.ts';
import { startNginx, type NginxProxy } from '../support/nginx.ts';
import type { NetnsHarness } from './harness.ts';

/**
 * Several nearsync instances behind Debian's nginx, as a team that outgrew one machine
 * deploys it: every instance shares the configured engines (PostgreSQL, Redis) and one
 * block directory (a shared filesystem DATA_DIR), and pages inside the test's network
 * namespace open http://localhost:<port>, forwarded to nginx on the host end of the veth.
 */
export interface ScaledDeployment {
  /** What pages inside the namespace open. */
  origin: string;
  nginx: NginxProxy;
  instances: RunningServer[];
  /** Stops one instance (graceful close, as a rolling restart or a scale-down would). */
  stopInstance(index: number): Promise<void>;
  /** The counters of one instance (a stopped one keeps its last figures). */
  metrics(index: number): ServerMetrics;
  /** Counters summed over every instance, stopped ones included. */
  totals(): ServerMetrics;
  close(): Promise<void>;
}

export interface ScaledDeploymentOptions {
  instances: number;
  backends: BackendConfig;
  server?: Omit<ServerOptions, 'host' | 'port' | 'dataDir' | 'staticDir' | 'backends'>;
}

export async function startScaledDeployment(harness: NetnsHarness, options: ScaledDeploymentOptions): Promise<ScaledDeployment> {
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const dataDir = await makeTempDir('nearsync-scaled-data-', cleanups);
    const instances: RunningServer[] = [];
    const stopped = new Set<number>();
    for (let i = 0; i < options.instances; i++) {
      const server = await startServer({
        logger: silentLogger,
        ...options.server,
        backends: options.backends,
        host: '127.0.0.1',
        port: 0,
        dataDir,
        staticDir: harness.staticDir,
      });
      instances.push(server);
      cleanups.push(() => server.close());
    }
    const port = await freePort(harness.ns.hostAddress);
    const nginx = await startNginx({
      listenHost: harness.ns.hostAddress,
      listenPort: port,
      upstreams: instances.map((server) => `127.0.0.1:${server.port}`),
      relayBalancing: 'least_conn',
    });
    cleanups.push(() => nginx.close());
    const { origin } = await harness.exposePort(port);
    return {
      origin,
      nginx,
      instances,
      async stopInstance(index) {
        stopped.add(index);
        await instances[index].close();
      },
      metrics: (index) => instances[index].metrics(),
      totals() {
        const sum = {} as Record<keyof ServerMetrics, number>;
        for (const server of instances) {
          for (const [key, value] of Object.entries(server.metrics()) as [keyof ServerMetrics, number][]) sum[key] = (sum[key] ?? 0) + value;
        }
        return sum;
      },
      close: () => runCleanups(cleanups),
    };
  } catch (error) {
    await runCleanups(cleanups);
    throw error;
  }
}

/** A port free on `host` right now (nginx cannot be told to pick one). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen({ host, port: 0 }, () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}
