import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { DaemonPool, lanTestUdpPort } from '../support/lan-daemon.ts';
import { tempFileBlocks } from '../support/temp-file-blocks.ts';
import { createWorkspace, sha256, until } from './helpers.ts';

/**
 * Two `nearsync peer --lan` daemons as child processes inside one test-made network
 * namespace, the real server in this process on the host end of the veth. Adverts go to the
 * veth's /30 broadcast address (looped back to both daemons), blocks over TLS-PSK TCP.
 */

const SYNC_MS = 60_000;
const MiB = 1024 * 1024;

/** Blocks a daemon has stored: `<state>/blocks/ab/<hash>`, a file only once complete. */
async function storedBlocks(stateDir: string): Promise<number> {
  const root = join(stateDir, 'blocks');
  const shards = (await readdir(root).catch(() => [] as string[])).filter((name) => /^[0-9a-f]{2}$/.test(name));
  let count = 0;
  for (const shard of shards) count += (await readdir(join(root, shard)).catch(() => [] as string[])).length;
  return count;
}

describe.skipIf(!isRoot())('nearsync peer --lan: two daemons on one LAN', () => {
  let harness: NetnsHarness;
  let server: NetnsTestServer;
  let scratch: string;
  const daemons = new DaemonPool();
  const udpPort = lanTestUdpPort();

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'nearsync-lan-peering-'));
    harness = await NetnsHarness.start({ buildApp: false });
    server = await harness.startServer();
  }, 60_000);

  afterAll(async () => {
    await daemons.stopAll();
    await harness?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }, 60_000);

  const broadcast = () => harness.ns.broadcastAddress;
  const contentOf = (path: string) => readFile(path).then(sha256, () => null);
  const served = () => server.server.metrics().blockBytesServed;
  /** Runs `tc` inside the namespace (its loopback carries the daemons' LAN TCP, not the server's traffic). */
  const tc = (...args: string[]) => promisify(execFile)('ip', ['netns', 'exec', harness.ns.name, 'tc', ...args]);
  const withOutput = (error: Error, ...named: [string, { output: string }][]) =>
    new Error(`${error.message}${named.map(([name, daemon]) => `\n--- ${name} ---\n${daemon.output}`).join('')}`);

  it('a joining daemon gets every block from the LAN peer, none from the server; its own file reaches the peer', async () => {
    const member = await createWorkspace(server.hostUrl, 'lan peering');
    const dirA = join(scratch, 'a');
    const dirB = join(scratch, 'b');
    await mkdir(join(dirA, 'docs'), { recursive: true });
    const files = new Map<string, Buffer>([
      ['docs/big.bin', randomBytes(6 * MiB + 123)],
      ['medium.bin', randomBytes(MiB + 5)],
      ['note.txt', Buffer.from('hello from A\n')],
    ]);
    for (const [path, bytes] of files) await writeFile(join(dirA, path), bytes);
    const lan = { port: udpPort, tcpPort: 0, broadcast: broadcast() };

    const a = daemons.start({ netns: harness.ns, server: server.hostUrl, invite: member.inviteUrl, dir: dirA, lan });
    await a.waitFor(/LAN: serving blocks on tcp\/\d+/);
    for (const path of files.keys()) await a.waitFor(new RegExp(`uploaded ${path.replace('.', '\\.')}`), SYNC_MS);
    await a.waitFor(/in sync at journal entry 3\b/, SYNC_MS);

    const servedBefore = served();
    const b = daemons.start({ netns: harness.ns, server: server.hostUrl, invite: member.inviteUrl, dir: dirB, lan });
    for (const [path, bytes] of files) {
      await until(async () => (await contentOf(join(dirB, path))) === sha256(bytes), SYNC_MS, `${path} at B`).catch((error: Error) => {
        throw new Error(`${error.message}\n--- A ---\n${a.output}\n--- B ---\n${b.output}`);
      });
    }
    // Every block came over the LAN: the server sent no block bytes while B synced.
    expect(served()).toBe(servedBefore);
    const fetched = [...b.output.matchAll(/LAN: fetched (\d+) blocks from/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    expect(fetched).toBe(4); // 6 MiB + 123 is two 4 MiB blocks; the others one each
    expect(b.output).toMatch(/LAN: connected to [0-9a-f]{8} at 10\.213\.\d+\.\d+:\d+ cursor 3/);
    expect(a.output).toMatch(/LAN: accepted [0-9a-f]{8}/);

    // B's own file reaches A (over the link B opened, or from the server if A asked first).
    const fromB = randomBytes(2 * MiB + 9);
    await writeFile(join(dirB, 'from-b.bin'), fromB);
    await until(async () => (await contentOf(join(dirA, 'from-b.bin'))) === sha256(fromB), SYNC_MS, 'from-b.bin at A').catch((error: Error) => {
      throw new Error(`${error.message}\n--- A ---\n${a.output}\n--- B ---\n${b.output}`);
    });

    expect(a.output).not.toMatch(/failed|could not/);
    expect(b.output).not.toMatch(/failed|could not/);
    expect(await b.stop()).toBe(0);
    expect(await a.stop()).toBe(0);
  }, 180_000);

  it('serves blocks from its files, keeping no copy; a block whose file changed under it is a miss, fetched from the server, no one banned', async () => {
    const member = await createWorkspace(server.hostUrl, 'lan folder serving');
    const dirA = join(scratch, 'serve-a');
    const dirB = join(scratch, 'serve-b');
    await mkdir(dirA, { recursive: true });
    const files = new Map<string, Buffer>([
      ['kept.bin', randomBytes(6 * MiB + 321)],
      ['changed.bin', randomBytes(3 * MiB + 3)],
    ]);
    // Whole-second mtimes, so the test can put one back exactly after changing the bytes.
    const mtime = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
    for (const [path, bytes] of files) {
      await writeFile(join(dirA, path), bytes);
      await utimes(join(dirA, path), mtime, mtime);
    }
    const lan = { port: udpPort + 2, tcpPort: 0, broadcast: broadcast() };
    const a = daemons.start({ netns: harness.ns, server: server.hostUrl, invite: member.inviteUrl, dir: dirA, lan });
    await a.waitFor(new RegExp(`in sync at journal entry ${files.size}\\b`), SYNC_MS);
    // A's state dir keeps none of the blocks: its files hold them.
    await until(async () => (await storedBlocks(`${dirA}.nearsync`)) === 0, SYNC_MS, 'A keeping no block copies').catch((error: Error) => {
      throw withOutput(error, ['A', a]);
    });

    // changed.bin's bytes change under A with its size and mtime kept: A's scanner sees nothing.
    const changed = Buffer.from(files.get('changed.bin')!);
    changed.fill(7, 1000, 2000);
    await writeFile(join(dirA, 'changed.bin'), changed);
    await utimes(join(dirA, 'changed.bin'), mtime, mtime);

    const servedBefore = served();
    const b = daemons.start({ netns: harness.ns, server: server.hostUrl, invite: member.inviteUrl, dir: dirB, lan });
    for (const [path, bytes] of files) {
      await until(async () => (await contentOf(join(dirB, path))) === sha256(bytes), SYNC_MS, `${path} at B`).catch((error: Error) => {
        throw withOutput(error, ['A', a], ['B', b]);
      });
    }
    // kept.bin's two blocks came from A; changed.bin's one block, refused by A, from the server.
    expect(served() - servedBefore).toBe(files.get('changed.bin')!.length);
    const fromLan = [...b.output.matchAll(/LAN: fetched (\d+) blocks from/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    expect(fromLan).toBe(2);
    expect(a.output + b.output).not.toMatch(/banned/);
    // A's own upload at the start only: the change kept size and mtime, so its scanner saw none.
    expect(a.output.match(/uploaded changed\.bin/g)).toHaveLength(1);
    await b.waitFor(new RegExp(`in sync at journal entry ${files.size}\\b`), SYNC_MS);
    await until(async () => (await storedBlocks(`${dirB}.nearsync`)) === 0, SYNC_MS, 'B keeping no block copies');
    expect(await b.stop()).toBe(0);
    expect(await a.stop()).toBe(0);
  }, 120_000);

  it('a daemon killed mid-transfer: the joining one finishes from the other LAN peer; the killed one restarts and resumes', async () => {
    const member = await createWorkspace(server.hostUrl, 'lan kill');
    const dirA = join(scratch, 'kill-a');
    const dirB = join(scratch, 'kill-b');
    const dirC = join(scratch, 'kill-c');
    await mkdir(dirA, { recursive: true });
    // 48 MiB in six files of two blocks each.
    const files = new Map<string, Buffer>(Array.from({ length: 6 }, (_, i) => [`part-${i}.bin`, randomBytes(8 * MiB - 1000 * i)]));
    for (const [path, bytes] of files) await writeFile(join(dirA, path), bytes);
    const blockCount = files.size * 2;
    const lan = { port: udpPort + 1, tcpPort: 0, broadcast: broadcast() };
    const start = (dir: string, invite?: string) =>
      daemons.start({ netns: harness.ns, server: server.hostUrl, invite, dir, lan });
    const allAt = async (dir: string, who: string, peers: [string, { output: string }][]) => {
      for (const [path, bytes] of files) {
        await until(async () => (await contentOf(join(dir, path))) === sha256(bytes), SYNC_MS, `${path} at ${who}`).catch((error: Error) => {
          throw withOutput(error, ...peers);
        });
      }
    };

    let a = start(dirA, member.inviteUrl);
    await a.waitFor(new RegExp(`in sync at journal entry ${files.size}\\b`), SYNC_MS);
    const c = start(dirC, member.inviteUrl);
    await allAt(dirC, 'C', [['A', a], ['C', c]]);
    await c.waitFor(new RegExp(`in sync at journal entry ${files.size}\\b`), SYNC_MS);

    // Slow the namespace's loopback (the daemons' LAN links) so B's transfer lasts a few seconds.
    await tc('qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', '100mbit', 'burst', '256kb', 'latency', '200ms');
    try {
      const servedBefore = served();
      const b = start(dirB, member.inviteUrl);
      // Both peers are sources, and some but not all blocks are stored: then A dies.
      let storedAtKill = 0;
      await until(
        async () => {
          if ((b.output.match(/LAN: connected to /g) ?? []).length < 2) return false;
          // Staged, or written into the temp files of files being assembled (the usual place).
          storedAtKill = (await storedBlocks(`${dirB}.nearsync`)) + (await tempFileBlocks(dirB)).size;
          return storedAtKill > 0;
        },
        SYNC_MS,
        'B fetching from both peers',
      ).catch((error: Error) => {
        throw withOutput(error, ['A', a], ['B', b], ['C', c]);
      });
      a.kill('SIGKILL');
      await a.exited;
      expect(storedAtKill).toBeLessThan(blockCount);

      await allAt(dirB, 'B', [['B', b], ['C', c]]);
      // Synced (and so advertising) with the blocks stored, whatever became of requests to A.
      await b.waitFor(new RegExp(`in sync at journal entry ${files.size}\\b`), SYNC_MS);
      const serverBytes = served() - servedBefore;
      console.log(`kill mid-transfer: B had ${storedAtKill} of ${blockCount} blocks at the kill; server sent ${serverBytes} block bytes during B's sync`);
      expect(serverBytes).toBe(0);
      expect(b.output).toMatch(/LAN: connection to [0-9a-f]{8} closed/);
      const portOfC = /LAN: serving blocks on tcp\/(\d+)/.exec(c.output)![1];
      await b.waitFor(new RegExp(`LAN: fetched \\d+ blocks from [0-9a-f]{8} at [\\d.]+:${portOfC} `));
    } finally {
      // A failure here must not hide the test's own; the namespace goes with the harness anyway.
      await tc('qdisc', 'del', 'dev', 'lo', 'root').catch(() => undefined);
    }

    // A restarts on its folder and state dir (no invite: it is a member already) and stays in sync.
    a = start(dirA);
    await a.waitFor(new RegExp(`resuming at journal entry ${files.size}\\b`), SYNC_MS);
    await a.waitFor(/syncing workspace/, SYNC_MS);
    const fromC = randomBytes(3 * MiB + 17);
    await writeFile(join(dirC, 'from-c.bin'), fromC);
    await until(async () => (await contentOf(join(dirA, 'from-c.bin'))) === sha256(fromC), SYNC_MS, 'from-c.bin at A').catch((error: Error) => {
      throw withOutput(error, ['A', a], ['C', c]);
    });
    await allAt(dirA, 'A', [['A', a]]);
    expect(a.output).not.toMatch(/uploaded part-/); // its files were in step: nothing uploaded again
    expect(await a.stop()).toBe(0);
  }, 180_000);
});
