import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { DaemonPool } from '../support/lan-daemon.ts';
import { createWorkspace, sha256, until } from './helpers.ts';

/**
 * Two `nearsync peer --lan` daemons as child processes inside one test-made network
 * namespace, the real server in this process on the host end of the veth. Adverts go to the
 * veth's /30 broadcast address (looped back to both daemons), blocks over TLS-PSK TCP.
 */

const SYNC_MS = 60_000;
const MiB = 1024 * 1024;

describe.skipIf(!isRoot())('nearsync peer --lan: two daemons on one LAN', () => {
  let harness: NetnsHarness;
  let server: NetnsTestServer;
  let scratch: string;
  const daemons = new DaemonPool();
  const udpPort = 20_000 + Math.floor(Math.random() * 40_000);

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

  /** The /30 broadcast address of the namespace's veth pair (host end + 2). */
  const broadcast = () => harness.ns.hostAddress.replace(/\.(\d+)$/, (_, last) => `.${Number(last) + 2}`);
  const contentOf = (path: string) => readFile(path).then(sha256, () => null);
  const served = () => server.server.metrics().blockBytesServed;

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
});
