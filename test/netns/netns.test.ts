import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertNetnsSupport,
  cleanStaleNamespaces,
  createNamespace,
  isRoot,
  netnsSupport,
  startTcpForwarder,
  type Netns,
} from './netns.ts';

/** Namespace lifecycle and the loopback forwarder. Skipped only when not root. */

function ip(args: string[]): string {
  const result = spawnSync(assertNetnsSupport(), args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** Runs a Node snippet inside the namespace and returns its stdout. */
async function nodeIn(ns: Netns, source: string): Promise<string> {
  return ns.exec(process.execPath, ['--input-type=module', '-e', source]);
}

describe.skipIf(!isRoot())('network namespaces for tests', () => {
  let ns: Netns;
  let sink: Server;
  let port: number;

  beforeAll(async () => {
    assertNetnsSupport(); // as root without `ip`: fails here, saying what to install
    expect(netnsSupport()).toMatchObject({ ok: true, isRoot: true });
    ns = await createNamespace();
    // A TCP server on the host end of the veth: streams `n` bytes for a request line "<n>\n".
    const chunk = Buffer.alloc(1024 * 1024, 1);
    sink = createServer((socket) => {
      socket.once('data', (line) => {
        let left = Number(line.toString().trim());
        const pump = () => {
          while (left > 0) {
            const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
            left -= piece.length;
            if (!socket.write(piece)) return void socket.once('drain', pump);
          }
          socket.end();
        };
        pump();
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => sink.listen({ host: ns.hostAddress, port: 0 }, resolve));
    port = (sink.address() as AddressInfo).port;
  });

  afterAll(async () => {
    if (sink) await new Promise((resolve) => sink.close(resolve));
    await ns?.close();
  });

  it('has loopback and a veth with a /30 and a default route to the host end, nothing else', async () => {
    expect(ns.name).toMatch(new RegExp(`^nsync-${process.pid}-\\d+$`));
    expect(ns.hostAddress).toMatch(/^10\.213\.\d+\.\d+$/);
    const links = ip(['-n', ns.name, '-o', 'link', 'show'])
      .split('\n')
      .filter(Boolean)
      .map((line) => /^\d+:\s+([^:@\s]+)/.exec(line)![1]);
    expect(links.sort()).toEqual(['lo', ns.nsInterface].sort());
    expect(ip(['-n', ns.name, '-4', 'addr', 'show', 'dev', ns.nsInterface])).toContain(`${ns.nsAddress}/30`);
    expect(ip(['-n', ns.name, 'route', 'show', 'default'])).toContain(`default via ${ns.hostAddress} dev ${ns.nsInterface}`);
    expect(ip(['-n', ns.name, '-6', 'route', 'show']).trim()).not.toContain('default');
    expect(ip(['-4', 'addr', 'show', 'dev', ns.hostInterface])).toContain(`${ns.hostAddress}/30`);
    // What arrives on the host end is never forwarded, whatever the global setting.
    expect((await readFile(`/proc/sys/net/ipv4/conf/${ns.hostInterface}/forwarding`, 'utf8')).trim()).toBe('0');
  });

  it('runs processes inside: they see the namespace, and reach the host end of the veth', async () => {
    const inside = await nodeIn(
      ns,
      `import os from 'node:os'; console.log(JSON.stringify(Object.keys(os.networkInterfaces()).sort()))`,
    );
    expect(JSON.parse(inside)).toEqual(['lo', ns.nsInterface].sort());
    const out = await nodeIn(
      ns,
      `import net from 'node:net';
       const s = net.connect(${port}, ${JSON.stringify(ns.hostAddress)}, () => s.write('5\\n'));
       let n = 0; s.on('data', (d) => (n += d.length)); s.on('end', () => console.log(n));`,
    );
    expect(out.trim()).toBe('5');
  });

  it('forwards loopback inside the namespace to the host end; reports throughput against a direct connection', async () => {
    const forwarder = await startTcpForwarder(ns, { listenPort: port, targetHost: ns.hostAddress });
    try {
      const bytes = 512 * 1024 * 1024;
      const measure = (host: string) =>
        nodeIn(
          ns,
          `import net from 'node:net';
           const t0 = performance.now();
           const s = net.connect(${port}, ${JSON.stringify(host)}, () => s.write('${bytes}\\n'));
           let n = 0; s.on('data', (d) => (n += d.length));
           s.on('end', () => console.log(JSON.stringify({ n, mbps: n / 1e6 / ((performance.now() - t0) / 1000) })));`,
        ).then((out) => JSON.parse(out) as { n: number; mbps: number });
      const rows: string[] = [];
      for (const [label, host] of [
        ['forwarder 127.0.0.1', '127.0.0.1'],
        ['forwarder [::1]', '::1'],
        ['direct (veth)', ns.hostAddress],
      ] as const) {
        let best = 0;
        for (let round = 0; round < 2; round++) {
          const { n, mbps } = await measure(host);
          expect(n).toBe(bytes);
          best = Math.max(best, mbps);
        }
        rows.push(`  ${label.padEnd(20)} ${best.toFixed(0).padStart(5)} MB/s`);
      }
      console.log(`TCP, Node in the namespace reading 512 MiB from the test process, best of 2:\n${rows.join('\n')}`);
    } finally {
      await forwarder.close();
    }
  });

  it('forwards every byte to a slow reader after the far end has closed', async () => {
    // The reader stays behind the sender throughout, so the forwarder often still holds
    // unflushed bytes when the host end closes: they must arrive all the same. (A forwarder
    // that destroyed the reader's side on that close lost the tail in about 1 run in 20 here.)
    const forwarder = await startTcpForwarder(ns, { listenPort: port, targetHost: ns.hostAddress });
    try {
      const bytes = 32 * 1024 * 1024;
      const out = await nodeIn(
        ns,
        `import net from 'node:net';
         const s = net.connect(${port}, '127.0.0.1', () => s.write('${bytes}\\n'));
         let n = 0;
         s.on('data', (d) => { n += d.length; s.pause(); setTimeout(() => s.resume(), 2); });
         s.on('close', () => console.log(n));`,
      );
      expect(Number(out.trim())).toBe(bytes);
    } finally {
      await forwarder.close();
    }
  });

  it('removes namespaces and veths left by dead processes, and keeps those of live ones', async () => {
    // A pid that is certainly gone: a child that has exited.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout);
    const staleNs = `nsync-${deadPid}-0`;
    const staleVeth = `nsy${deadPid}h0`;
    ip(['netns', 'add', staleNs]);
    ip(['link', 'add', staleVeth, 'type', 'veth', 'peer', 'name', `nsy${deadPid}n0`]);
    try {
      const removed = await cleanStaleNamespaces();
      expect(removed).toContain(staleNs);
      expect(removed).toContain(staleVeth);
      expect(removed).not.toContain(ns.name);
      expect(ip(['netns', 'list'])).not.toContain(staleNs);
      expect(ip(['netns', 'list'])).toContain(ns.name);
    } finally {
      spawnSync(assertNetnsSupport(), ['netns', 'delete', staleNs]);
      spawnSync(assertNetnsSupport(), ['link', 'delete', staleVeth]);
    }
  });

  it('close() removes the namespace and its veth at once', async () => {
    const other = await createNamespace();
    expect(other.hostAddress).not.toBe(ns.hostAddress);
    await other.close();
    expect(ip(['netns', 'list'])).not.toContain(other.name);
    expect(ip(['-o', 'link', 'show'])).not.toContain(other.hostInterface);
  });
});
