import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Runs `npm run bench:load` with tiny counts on SQLite; resolves with its exit code and the JSON rows it printed. */
function runBench(args: string[]): Promise<{ code: number | null; rows: Array<Record<string, unknown>>; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/bench/load/run.ts', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGTERM'), 150_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const rows = stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      resolve({ code, rows, stderr });
    });
  });
}

describe('npm run bench:load (smoke, SQLite, tiny counts)', () => {
  it('prints a row per measurement with real figures, and exits 0', async () => {
    const { code, rows, stderr } = await runBench([
      '--engines', 'sqlite', '--instances', '1',
      '--polls', '40', '--sockets', '40', '--namespaces', '4', '--open-rate', '400',
      '--advert-rate', '20', '--seconds', '1',
      '--committers', '1,4', '--commit-namespaces', '2', '--readers', '2', '--page', '20',
    ]);
    expect(code, stderr).toBe(0);
    expect(rows.map((row) => row.scenario)).toEqual(['idle', 'fanout-steady', 'fanout-burst', 'commits', 'commits', 'journal-reads']);
    for (const row of rows) expect(row).toMatchObject({ engine: 'sqlite', instances: 1 });
    // A second of steady load costs the server more than one 10 ms CPU tick.
    for (const row of [rows[1], rows[3], rows[4], rows[5]]) expect(row.serverCpuPct).toBeGreaterThan(0);

    const [idle, steady, burst, commits1, commits4, reads] = rows;
    expect(idle).toMatchObject({ polls: 40, sockets: 40, woken: 40, pollErrors: 0 });
    expect(idle.rssBaseMiB).toBeGreaterThan(10);
    expect(idle.rssAllMiB).toBeGreaterThan(0);
    expect(idle.wakeAllMs).toBeGreaterThanOrEqual(0);

    for (const fanout of [steady, burst]) {
      expect(fanout).toMatchObject({ sockets: 40, namespaces: 2, malformed: 0 });
      expect(fanout.advertsSent).toBeGreaterThan(0);
      // Each advert reaches the other 19 members of its namespace, every one of them.
      expect(fanout.deliveriesExpected).toBe((fanout.advertsSent as number) * 19);
      expect(fanout.delivered).toBe(fanout.deliveriesExpected);
      expect(fanout.deliveredPerSec).toBeGreaterThan(0);
      expect(fanout.p99Ms).toBeGreaterThanOrEqual(fanout.p50Ms as number);
    }
    expect(burst.advertsSent).toBe(40);

    expect(commits1).toMatchObject({ concurrency: 1, failed: 0 });
    expect(commits4).toMatchObject({ concurrency: 4, failed: 0 });
    for (const commits of [commits1, commits4]) {
      expect(commits.ok).toBeGreaterThan(0);
      expect(commits.perSec).toBeGreaterThan(0);
    }
    expect(reads).toMatchObject({ concurrency: 2, failed: 0, entriesPerPage: 20 });
    expect(reads.perSec).toBeGreaterThan(0);
  }, 180_000);
});
