import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Debian's nginx in front of several nearsync instances, as an operator would run it:
 * started by the tests with a config they write, torn down afterwards. The config is the one
 * README "Scaling out" describes: round robin for HTTP, WebSocket upgrade for /socket.io.
 */
export const NGINX_PATH = '/usr/sbin/nginx';

export interface NginxOptions {
  /** Address and port nginx listens on; port 0 is not supported by nginx, so pick a free one. */
  listenHost: string;
  listenPort: number;
  /** The instances, as host:port. */
  upstreams: string[];
  /**
   * How relay sockets are spread. `least_conn` sends a new socket to the instance holding
   * the fewest (so two browsers land on different instances); HTTP stays round robin.
   */
  relayBalancing?: 'round-robin' | 'least_conn';
}

export interface NginxProxy {
  /** http://listenHost:listenPort */
  url: string;
  port: number;
  /** nginx's error log so far (for a failing test's message). */
  errorLog(): Promise<string>;
  close(): Promise<void>;
}

/** The nginx.conf for `options`, with every path under `prefix`. */
export function nginxConfig(options: NginxOptions, prefix: string): string {
  const servers = (extra: string) => options.upstreams.map((upstream) => `    server ${upstream}${extra};`).join('\n');
  return `# Written by test/support/nginx.ts
daemon off;
master_process on;
worker_processes 1;
user root;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;

  upstream nearsync_http {
${servers(' max_fails=1 fail_timeout=2s')}
    keepalive 32;
  }
  upstream nearsync_relay {
${options.relayBalancing === 'least_conn' ? '    least_conn;\n' : ''}${servers(' max_fails=1 fail_timeout=2s')}
  }

  server {
    listen ${options.listenHost}:${options.listenPort};
    # One block (4 MiB) per upload, plus headroom.
    client_max_body_size 5m;

    location /socket.io/ {
      proxy_pass http://nearsync_relay;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $http_host;
      proxy_read_timeout 120s;
    }

    location / {
      proxy_pass http://nearsync_http;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      # Long polls hold up to 60 s; blocks stream both ways without being spooled to disk.
      proxy_read_timeout 90s;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_next_upstream error timeout http_502 http_503;
    }
  }
}
`;
}

export async function startNginx(options: NginxOptions): Promise<NginxProxy> {
  if (!existsSync(NGINX_PATH)) throw new Error(`${NGINX_PATH} is missing: install Debian's nginx (apt-get install nginx-light); npm test's preflight does as root`);
  const prefix = await mkdtemp(join(tmpdir(), 'nearsync-nginx-'));
  for (const dir of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(prefix, dir));
  const configPath = join(prefix, 'nginx.conf');
  await writeFile(configPath, nginxConfig(options, prefix));
  const errorLog = () => readFile(join(prefix, 'error.log'), 'utf8').catch(() => '');

  const child: ChildProcess = spawn(NGINX_PATH, ['-p', prefix, '-c', configPath, '-e', join(prefix, 'error.log')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(prefix, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(options.listenHost, options.listenPort))) {
      if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${stderr}${await errorLog()}`);
      if (Date.now() > deadline) throw new Error(`nginx did not listen within 10 s: ${stderr}${await errorLog()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `http://${options.listenHost}:${options.listenPort}`, port: options.listenPort, errorLog, close: stop };
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
