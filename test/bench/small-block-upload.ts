import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { BlockBatchSender } from '../../src/engine/block-batches.ts';
import { ServerApi } from '../../src/engine/server-api.ts';
import type { BlockHash, BlockUpload } from '../../src/protocol/index.ts';
import { startServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';

/**
 * `npx tsx test/bench/small-block-upload.ts [--blocks 2000] [--repeats 1]`: uploads small blocks
 * (0.2–3 KiB) to a real server (a child process, files on disk under the system temp dir)
 * from Node, once as single PUTs 4 at a time and once as batch uploads (BlockBatchSender: ≤ 4 MiB,
 * 2 in flight), each on a fresh server. Prints wall time and the server process's CPU.
 */

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};

if (process.argv[2] === 'serve') {
  const dataDir = process.argv[3];
  const server = await startServer({ host: '127.0.0.1', port: 0, staticDir: null, logger: silentLogger, dataDir });
  process.stdout.write(`URL ${server.url}\n`);
  // Each line on stdin asks for the CPU used so far.
  for await (const _ of createInterface({ input: process.stdin })) {
    const { user, system } = process.cpuUsage();
    process.stdout.write(`CPU ${(user + system) / 1e6}\n`);
  }
  process.exit(0);
}

async function withServer<T>(work: (url: string, cpu: () => Promise<number>) => Promise<T>): Promise<T> {
  const dataDir = await mkdtemp(join(tmpdir(), 'nearsync-bench-upload-'));
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'serve', dataDir], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (prefix: string) => {
    const { value } = await lines.next();
    if (typeof value !== 'string' || !value.startsWith(prefix)) throw new Error(`server said ${String(value)}`);
    return value.slice(prefix.length);
  };
  try {
    const url = await next('URL ');
    return await work(url, async () => {
      child.stdin!.write('\n');
      return Number(await next('CPU '));
    });
  } finally {
    child.kill();
    await rm(dataDir, { recursive: true, force: true });
  }
}

function makeBlocks(count: number): BlockUpload[] {
  return Array.from({ length: count }, () => {
    const bytes = new Uint8Array(randomBytes(200 + Math.floor(Math.random() * 2873)));
    return { hash: createHash('sha256').update(bytes).digest('hex') as BlockHash, bytes };
  });
}

async function run(mode: 'single' | 'batch', blocks: BlockUpload[]): Promise<{ seconds: number; serverCpu: number }> {
  return withServer(async (url, cpu) => {
    const created = await new ServerApi(url).createWorkspace('bench');
    const api = new ServerApi(url, created.token);
    const before = await cpu();
    const started = performance.now();
    if (mode === 'single') {
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let i = next++; i < blocks.length; i = next++) await api.putBlock(blocks[i].hash, blocks[i].bytes);
        }),
      );
    } else {
      const sender = new BlockBatchSender(api);
      for (const block of blocks) await sender.add(block);
      await sender.finish();
    }
    const seconds = (performance.now() - started) / 1000;
    return { seconds, serverCpu: (await cpu()) - before };
  });
}

const count = arg('blocks', 2000);
for (let repeat = 0; repeat < arg('repeats', 1); repeat++) {
  const blocks = makeBlocks(count);
  const kib = blocks.reduce((n, block) => n + block.bytes.length, 0) / 1024;
  for (const mode of ['single', 'batch'] as const) {
    const { seconds, serverCpu } = await run(mode, blocks);
    console.log(`${mode.padEnd(6)} ${count} blocks (${kib.toFixed(0)} KiB): ${seconds.toFixed(2)} s, server CPU ${serverCpu.toFixed(2)} s`);
  }
}
