import { createServer } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../e2e/harness.ts';
import { chromiumProcesses, markerSwitch } from './chromium-rss.ts';

/**
 * Where a zip's sink spends its time: Chromium's FileSystemWritableFileStream fed the ways a zip
 * could feed it (block Files n per write, bytes), each phase timed in a worker (write phase and
 * close() apart) with the CPU each thread of each Chromium process used in it, read from /proc.
 * Block files are 4 MiB OPFS files, as the block store keeps them; the target is an OPFS file
 * (a picked file cannot be driven headless).
 *
 *   npx tsx test/bench/zip-sink-probe.ts [MiB=1024] [phase,...]
 */

const MiB = 1024 * 1024;
const sizeMiB = Number(process.argv[2] ?? 1024);
const only = process.argv[3]?.split(',');

const WORKER = `
const dir = async () => (await navigator.storage.getDirectory()).getDirectoryHandle('probe', { create: true });
const blocksDir = async () => (await dir()).getDirectoryHandle('blocks', { create: true });
async function handles() {
  const out = [];
  for await (const h of (await blocksDir()).values()) if (h.kind === 'file') out.push(h);
  out.sort((a, b) => a.name.localeCompare(b.name));
  return out;
}
async function target(name) {
  const d = await dir();
  try { await d.removeEntry(name); } catch {}
  return d.getFileHandle(name, { create: true });
}
const phases = {
  async setup(count) {
    const d = await blocksDir();
    const block = new Uint8Array(4 * 1024 * 1024);
    for (let at = 0; at < block.length; at += 65536) crypto.getRandomValues(block.subarray(at, at + 65536));
    for (let i = 0; i < count; i++) {
      const h = await d.getFileHandle('b' + String(i).padStart(5, '0'), { create: true });
      const a = await h.createSyncAccessHandle();
      block[0] = i & 255; block[1] = i >> 8;
      a.truncate(0); a.write(block, { at: 0 }); a.flush(); a.close();
    }
    return { count };
  },
  async readFiles() {
    const hs = await handles();
    const t = performance.now();
    let bytes = 0;
    for (const h of hs) bytes += (await (await h.getFile()).arrayBuffer()).byteLength;
    return { seconds: (performance.now() - t) / 1000, bytes };
  },
  // Only the File of each block (what a zip asks the browser for per block), nothing read.
  async getFiles() {
    const hs = await handles();
    const t = performance.now();
    let bytes = 0;
    for (const h of hs) bytes += (await h.getFile()).size;
    return { seconds: (performance.now() - t) / 1000, bytes };
  },
  async readSync() {
    const hs = await handles();
    const t = performance.now();
    let bytes = 0;
    for (const h of hs) {
      const a = await h.createSyncAccessHandle({ mode: 'read-only' });
      const b = new Uint8Array(a.getSize()); bytes += a.read(b, { at: 0 }); a.close();
    }
    return { seconds: (performance.now() - t) / 1000, bytes };
  },
  // Block Files, n per write, as one Blob each.
  async filesPerWrite(n) {
    const hs = await handles();
    const out = await target('out.bin');
    const t0 = performance.now();
    const w = await out.createWritable();
    for (let i = 0; i < hs.length; i += n) {
      const files = await Promise.all(hs.slice(i, i + n).map((h) => h.getFile()));
      await w.write(new Blob(files));
    }
    const t1 = performance.now();
    await w.close();
    const t2 = performance.now();
    return { write: (t1 - t0) / 1000, close: (t2 - t1) / 1000, seconds: (t2 - t0) / 1000, size: (await out.getFile()).size };
  },
  // Block Files, n per write, without waiting for each write (pipeTo keeps one queued).
  async filesQueued(n) {
    const hs = await handles();
    const out = await target('out.bin');
    const t0 = performance.now();
    const w = await out.createWritable();
    const writer = w.getWriter();
    for (let i = 0; i < hs.length; i += n) {
      const files = await Promise.all(hs.slice(i, i + n).map((h) => h.getFile()));
      await writer.ready;
      writer.write(new Blob(files));
    }
    await writer.ready;
    const t1 = performance.now();
    await writer.close();
    const t2 = performance.now();
    return { write: (t1 - t0) / 1000, close: (t2 - t1) / 1000, seconds: (t2 - t0) / 1000, size: (await out.getFile()).size };
  },
  // Bytes (read through sync handles), n blocks per write.
  async bytesPerWrite(n) {
    const hs = await handles();
    const out = await target('out.bin');
    const t0 = performance.now();
    const w = await out.createWritable();
    for (let i = 0; i < hs.length; i += n) {
      const buf = new Uint8Array(n * 4 * 1024 * 1024);
      let used = 0;
      for (const h of hs.slice(i, i + n)) {
        const a = await h.createSyncAccessHandle({ mode: 'read-only' });
        used += a.read(buf.subarray(used), { at: 0 }); a.close();
      }
      await w.write(buf.subarray(0, used));
    }
    const t1 = performance.now();
    await w.close();
    const t2 = performance.now();
    return { write: (t1 - t0) / 1000, close: (t2 - t1) / 1000, seconds: (t2 - t0) / 1000, size: (await out.getFile()).size };
  },
  // The origin-private sink: a sync access handle on the target (not a picked file's way).
  async syncHandleSink() {
    const hs = await handles();
    const out = await target('out.bin');
    const t0 = performance.now();
    const o = await out.createSyncAccessHandle();
    let at = 0;
    const buf = new Uint8Array(4 * 1024 * 1024);
    for (const h of hs) {
      const a = await h.createSyncAccessHandle({ mode: 'read-only' });
      const n = a.read(buf, { at: 0 }); a.close();
      at += o.write(buf.subarray(0, n), { at });
    }
    o.flush(); o.close();
    return { seconds: (performance.now() - t0) / 1000, size: at };
  },
  async cleanup() {
    await (await navigator.storage.getDirectory()).removeEntry('probe', { recursive: true });
    return {};
  },
};
onmessage = async (e) => {
  try { postMessage({ ok: await phases[e.data.phase](e.data.arg) }); }
  catch (error) { postMessage({ error: String(error) }); }
};
`;

/** CPU seconds by process type and thread name, from /proc of every process of the tagged Chromium. */
function threadCpu(tag: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const { pid, type } of chromiumProcesses(tag)) {
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      let stat: string;
      try {
        stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      } catch {
        continue;
      }
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+$/, '');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const key = `${type}/${comm}`;
      out.set(key, (out.get(key) ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100);
    }
  }
  return out;
}

function cpuDiff(before: Map<string, number>, after: Map<string, number>): string {
  const rows: [string, number][] = [];
  for (const [key, value] of after) {
    const used = value - (before.get(key) ?? 0);
    if (used >= 0.05) rows.push([key, used]);
  }
  rows.sort((a, b) => b[1] - a[1]);
  const byType = new Map<string, number>();
  for (const [key, used] of rows) byType.set(key.split('/')[0], (byType.get(key.split('/')[0]) ?? 0) + used);
  return `  cpu by process: ${[...byType].map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}\n  threads: ${rows.slice(0, 8).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`;
}

const server = createServer((_req, res) => {
  res.setHeader('content-type', 'text/html');
  res.end('<!doctype html><title>probe</title>');
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as { port: number }).port;
const profile = await mkdtemp(join(tmpdir(), 'zip-sink-probe-'));
const tag = randomUUID();
const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM_PATH, args: [...CHROMIUM_ARGS, markerSwitch(tag)] });
try {
  const page = await context.newPage();
  await page.goto(`http://localhost:${port}/`);
  await page.evaluate((source) => {
    const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
    (window as unknown as { probe: Worker }).probe = new Worker(url);
  }, WORKER);
  const call = (phase: string, arg?: number) =>
    page.evaluate(
      ([phase, arg]) =>
        new Promise((resolve, reject) => {
          const worker = (window as unknown as { probe: Worker }).probe;
          worker.onmessage = (event) => (event.data.error ? reject(new Error(event.data.error)) : resolve(event.data.ok));
          worker.postMessage({ phase, arg });
        }),
      [phase, arg] as const,
    ) as Promise<Record<string, number>>;
  const blocks = sizeMiB / 4;
  console.log(`setup ${blocks} blocks of 4 MiB: ${JSON.stringify(await call('setup', blocks))}`);
  const phases: [string, string, number | undefined][] = [
    ['readFiles', 'read as Files', undefined],
    ['readSync', 'read via sync handles', undefined],
    ['getFiles', 'getFile() of every block only', undefined],
    ['filesPerWrite', 'Files, 1 per write', 1],
    ['filesPerWrite', 'Files, 4 per write', 4],
    ['filesPerWrite', 'Files, 16 per write', 16],
    ['filesPerWrite', 'Files, 64 per write', 64],
    ['filesPerWrite', 'Files, all in one write', blocks],
    ['filesQueued', 'Files, 4 per write, one queued (as the zip before: pipeTo, 16 MiB)', 4],
    ['filesQueued', 'Files, 16 per write, one queued (as the zip now: pipeTo, 64 MiB)', 16],
    ['filesQueued', 'Files, 64 per write, one queued (256 MiB)', 64],
    ['filesQueued', 'Files, all in one write, queued', blocks],
    ['bytesPerWrite', 'bytes, 4 MiB per write', 1],
    ['bytesPerWrite', 'bytes, 16 MiB per write', 4],
    ['syncHandleSink', 'OPFS sync handle sink (bytes)', undefined],
    ['readFiles', 'read as Files (again)', undefined],
  ];
  for (const [phase, label, arg] of phases) {
    if (only && !only.includes(phase)) continue;
    const before = threadCpu(tag);
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const result = await call(phase, arg);
    const after = threadCpu(tag);
    const mbps = (sizeMiB * MiB) / result.seconds / 1e6;
    console.log(`${label}: ${result.seconds.toFixed(2)} s, ${phase === 'getFiles' ? '' : `${mbps.toFixed(0)} MB/s`}${result.write !== undefined ? ` (write ${result.write.toFixed(2)} s, close ${result.close.toFixed(2)} s)` : ''} load ${load}\n${cpuDiff(before, after)}`);
  }
  await call('cleanup');
} finally {
  await context.close();
  server.close();
  await rm(profile, { recursive: true, force: true });
}
