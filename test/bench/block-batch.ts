import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { basename, join } from 'node:path';
import { BLOCK_RECORD_ABSENT, BLOCK_RECORD_HEADER_BYTES, type BlockHash } from '../../src/protocol/index.ts';
import { manyFilesBytes, seedManyFiles, type ManyFilesWorkspace } from '../e2e/support/seed-many-files.ts';
import { cpuSeconds } from './load/proc.ts';
import { ServerProcess } from './load/server-process.ts';
import { median, type BenchRow } from './report.ts';

/**
 * The server's batch block download with many small blocks: `count` blocks of 0.2–3 KiB (the
 * many-files workspace, seeded over the HTTP API) fetched through POST /api/v1/ns/:ns/blocks,
 * 256 hashes a request, 4 requests in flight, as a browser joining such a workspace does.
 * Reported per round: blocks/s and the server's CPU seconds per 10,000 blocks (read from
 * /proc: the server is a child process, `src/server/main.ts` run by tsx, SQLite and block files
 * in a temp dir). The same-run floor is this process reading the same block files with plain
 * fs.readFile, 16 at a time (what getting the bytes off the page cache costs, without HTTP).
 *
 * Several checkouts can be compared in one sitting (`--server-root A,B`): each gets its own
 * server and workspace, and the rounds alternate between them, so a noisy machine weighs on
 * both alike.
 */

const BATCH = 256;
const IN_FLIGHT = 4;
const FLOOR_PARALLEL = 16;

interface Target {
  label: string;
  server: ServerProcess;
  workspace: ManyFilesWorkspace;
  hashes: BlockHash[];
  bytes: number;
  agent: Agent;
}

interface Round {
  seconds: number;
  serverCpu: number;
  clientCpu: number;
}

export async function benchBlockBatch(roots: string[], count: number, repeats: number, log: (line: string) => void): Promise<BenchRow[]> {
  const targets: Target[] = [];
  try {
    for (const [i, root] of roots.entries()) {
      const label = roots.length === 1 ? 'this checkout' : `${i}:${basename(root)}`;
      const server = await ServerProcess.start(`block-batch-${i}`, {}, root);
      targets.push({ label, server, workspace: undefined!, hashes: [], bytes: 0, agent: new Agent({ keepAlive: true, maxSockets: IN_FLIGHT }) });
      const target = targets[targets.length - 1];
      target.workspace = await seedManyFiles(server.url, count, { log });
      target.hashes = Array.from({ length: count }, (_, index) => createHash('sha256').update(manyFilesBytes(index)).digest('hex') as BlockHash);
      target.bytes = target.workspace.totalBytes;
      log(`block-batch: ${label} (${root}) seeded ${count} blocks, ${(target.bytes / 1e6).toFixed(1)} MB`);
    }
    // A warm-up pass each: JIT, page cache, the server's size cache and statements.
    for (const target of targets) await fetchAll(target);
    const rounds = new Map<Target, Round[]>(targets.map((target) => [target, []]));
    const floor: Round[] = [];
    for (let round = 0; round < repeats; round++) {
      for (const target of round % 2 === 0 ? targets : [...targets].reverse()) {
        const result = await fetchAll(target);
        rounds.get(target)!.push(result);
        log(`block-batch round ${round + 1}, ${target.label}: ${describe(result, count)}`);
      }
      const result = await readFloor(targets[0], count);
      floor.push(result);
      log(`block-batch round ${round + 1}, readFile floor: ${describe(result, count)}`);
    }
    const row = (label: string, what: string, results: Round[], bytes: number): BenchRow => ({
      scenario: 'block-batch',
      server: label,
      what,
      blocks: count,
      MB: Number((bytes / 1e6).toFixed(1)),
      rounds: results.length,
      'blocks/s': Math.round(median(results.map((r) => count / r.seconds))),
      'server CPU s/10k': Number(median(results.map((r) => (r.serverCpu * 10_000) / count)).toFixed(2)),
      'client CPU s/10k': Number(median(results.map((r) => (r.clientCpu * 10_000) / count)).toFixed(2)),
    });
    return [
      ...targets.map((target) => row(target.label, `POST blocks, ${BATCH} a request, ${IN_FLIGHT} in flight`, rounds.get(target)!, target.bytes)),
      { ...row('-', `fs.readFile floor, ${FLOOR_PARALLEL} at a time`, floor, targets[0].bytes), 'server CPU s/10k': null },
    ];
  } finally {
    for (const target of targets) {
      target.agent.destroy();
      await target.server.stop();
    }
  }
}

function describe(result: Round, count: number): string {
  return `${Math.round(count / result.seconds)} blocks/s, server CPU ${result.serverCpu.toFixed(2)} s, client CPU ${result.clientCpu.toFixed(2)} s`;
}

/** Every block through the batch route; checks that each response holds all its blocks. */
async function fetchAll(target: Target): Promise<Round> {
  const batches: BlockHash[][] = [];
  for (let i = 0; i < target.hashes.length; i += BATCH) batches.push(target.hashes.slice(i, i + BATCH));
  const serverBefore = cpuSeconds(target.server.pid)!;
  const clientBefore = process.cpuUsage();
  const began = performance.now();
  let next = 0;
  let received = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < batches.length) {
        const batch = batches[next++];
        const got = await fetchBatch(target, batch);
        received += got;
      }
    }),
  );
  const seconds = (performance.now() - began) / 1000;
  const client = process.cpuUsage(clientBefore);
  const serverCpu = cpuSeconds(target.server.pid)! - serverBefore;
  if (received !== target.bytes) throw new Error(`received ${received} block bytes of ${target.bytes}`);
  return { seconds, serverCpu, clientCpu: (client.user + client.system) / 1e6 };
}

/** One POST; resolves with the block bytes it carried (all of them present, or it throws). */
function fetchBatch(target: Target, hashes: BlockHash[]): Promise<number> {
  const url = new URL(`${target.server.url}/api/v1/ns/${target.workspace.namespaceId}/blocks`);
  const body = JSON.stringify({ hashes });
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent: target.agent,
        headers: { authorization: `Bearer ${target.workspace.token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`POST blocks: ${res.statusCode}`));
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          // Walks the record headers only: the floor does not hash either.
          const all = Buffer.concat(chunks);
          let offset = 0;
          let records = 0;
          let blockBytes = 0;
          while (offset < all.length) {
            const length = all.readUInt32BE(offset + 32);
            if (length === BLOCK_RECORD_ABSENT) return reject(new Error(`block ${all.toString('hex', offset, offset + 32)} came back absent`));
            offset += BLOCK_RECORD_HEADER_BYTES + length;
            blockBytes += length;
            records++;
          }
          if (offset !== all.length || records !== hashes.length) return reject(new Error(`${records} records of ${hashes.length}, ${all.length - offset} bytes over`));
          resolve(blockBytes);
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The same block files read by this process with fs.readFile (client CPU is the figure). */
async function readFloor(target: Target, count: number): Promise<Round> {
  const root = join(target.server.dataDir, 'blocks');
  const clientBefore = process.cpuUsage();
  const began = performance.now();
  let next = 0;
  let bytes = 0;
  await Promise.all(
    Array.from({ length: FLOOR_PARALLEL }, async () => {
      while (next < count) {
        const hash = target.hashes[next++];
        const got = await readFile(join(root, hash.slice(0, 2), hash.slice(2, 4), hash));
        bytes += got.length;
      }
    }),
  );
  const seconds = (performance.now() - began) / 1000;
  const client = process.cpuUsage(clientBefore);
  if (bytes !== target.bytes) throw new Error(`read ${bytes} bytes of ${target.bytes}`);
  return { seconds, serverCpu: 0, clientCpu: (client.user + client.system) / 1e6 };
}
