import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import { advertTag, deriveAdvertKey } from '../../src/lan/discovery/index.ts';
import type { LanStatus } from '../../src/lan/lan-status.ts';
import type { LanPeeringStatus } from '../../src/lan/lan-peering.ts';
import { LAN_ADVERT_MAX_BYTES, encodeLanAdvert, lanAdvertEpoch, type NamespaceId } from '../../src/protocol/index.ts';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { isRoot, stopProcess, type Netns } from '../netns/netns.ts';
import { DaemonPool, type DaemonProcess, lanTestUdpPort } from '../support/lan-daemon.ts';
import { createWorkspace, sha256, until } from './helpers.ts';

/**
 * A hostile host on the LAN of two honest `nearsync peer --lan` daemons (A holds the files,
 * B joins and syncs from A) and a third daemon C of another workspace, all inside one
 * test-made network namespace; the real server in this process. The attacker (a child
 * process in the namespace, test/support/lan-hostile-agent.ts) is a member of A's
 * workspace for some attacks and of C's only for others, and connects from its own
 * loopback addresses (127.0.0.2 …) so that A can tell it from B (10.213.x.y).
 *
 * Every attack is checked in the daemons' `<state>/lan-status.json` counters, and the
 * honest sync still completes byte-identical without a block byte from the server.
 */

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const AGENT = fileURLToPath(new URL('../support/lan-hostile-agent.ts', import.meta.url));
const SYNC_MS = 60_000;
const MiB = 1024 * 1024;

type Reply = Record<string, unknown>;
interface TcpOutcome {
  handshake: 'ok' | 'failed';
  hello: boolean;
  closed: boolean;
  answers: string[];
}

/** The hostile agent in the namespace, one JSON command at a time. */
class HostileAgent {
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: Reply) => void>();
  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line === 'ready') return;
      const reply = JSON.parse(line) as Reply & { id: number };
      this.waiting.get(reply.id)?.(reply);
      this.waiting.delete(reply.id);
    });
  }

  static async start(ns: Netns): Promise<HostileAgent> {
    const child = ns.spawn(process.execPath, ['--import', 'tsx', AGENT], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    const [first] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    if (first !== 'ready') throw new Error(`agent said ${first}`);
    return new HostileAgent(child);
  }

  async request(command: Reply): Promise<Reply> {
    const id = this.nextId++;
    const reply = new Promise<Reply>((resolve) => this.waiting.set(id, resolve));
    this.child.stdin!.write(`${JSON.stringify({ id, ...command })}\n`);
    const answer = await reply;
    if (answer.error) throw new Error(`agent: ${String(answer.error)}`);
    return answer;
  }

  async tcp(command: Reply): Promise<TcpOutcome> {
    return (await this.request({ cmd: 'tcp', ...command })) as unknown as TcpOutcome;
  }

  async stop(): Promise<void> {
    this.child.stdin!.end();
    await stopProcess(this.child);
  }
}

async function readStatus(stateDir: string): Promise<LanStatus | null> {
  try {
    return JSON.parse(await readFile(join(stateDir, 'lan-status.json'), 'utf8')) as LanStatus;
  } catch {
    return null;
  }
}

/** The daemon's LAN status once peering runs and `test` holds for it. */
async function statusWhen(stateDir: string, what: string, test: (status: LanPeeringStatus) => boolean, daemons: DaemonProcess[]): Promise<LanPeeringStatus> {
  let last: LanStatus | null = null;
  await until(
    async () => {
      last = await readStatus(stateDir);
      return last !== null && last.lan === 'on' && test(last);
    },
    SYNC_MS,
    what,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n--- status ---\n${JSON.stringify(last, null, 2)}${daemons.map((d, i) => `\n--- daemon ${i} ---\n${d.output}`).join('')}`);
  });
  return last as unknown as LanPeeringStatus;
}

/** The hashes of the blocks a daemon stored: `<state>/blocks/ab/<hash>`. */
async function storedBlocks(stateDir: string): Promise<string[]> {
  const root = join(stateDir, 'blocks');
  const shards = (await readdir(root).catch(() => [] as string[])).filter((name) => /^[0-9a-f]{2}$/.test(name));
  const hashes: string[] = [];
  for (const shard of shards) hashes.push(...(await readdir(join(root, shard)).catch(() => [] as string[])));
  return hashes;
}

describe.skipIf(!isRoot())('nearsync peer --lan against a hostile host on the LAN', () => {
  let harness: NetnsHarness;
  let server: NetnsTestServer;
  let scratch: string;
  let agent: HostileAgent;
  const daemons = new DaemonPool();
  const udpPort = lanTestUdpPort();

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'nearsync-lan-hostile-'));
    harness = await NetnsHarness.start({ buildApp: false });
    server = await harness.startServer();
    agent = await HostileAgent.start(harness.ns);
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    await daemons.stopAll();
    await harness?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }, 60_000);

  const broadcast = () => harness.ns.broadcastAddress;
  const contentOf = (path: string) => readFile(path).then(sha256, () => null);
  const served = () => server.server.metrics().blockBytesServed;
  /** Runs `tc` inside the namespace (its loopback carries the daemons' LAN TCP, not the server's traffic). */
  const tc = (...args: string[]) => promisify(execFile)('ip', ['netns', 'exec', harness.ns.name, 'tc', ...args]);
  const tcpPortOf = (daemon: DaemonProcess) => Number(/LAN: serving blocks on tcp\/(\d+)/.exec(daemon.output)![1]);

  it('refuses and counts every attack, bans only the attacker where it attacked, and the honest sync completes from the LAN', async () => {
    const x = await createWorkspace(server.hostUrl, 'hostile x');
    const y = await createWorkspace(server.hostUrl, 'hostile y');
    // The attacker's keys: X's as a member of X (for the attacks that need a proven
    // connection to A) and Y's as a member of Y (for the other-namespace attacks).
    const xKey = await new ServerApi(server.hostUrl, x.token).lanKey(x.ns as NamespaceId);
    const yKey = await new ServerApi(server.hostUrl, y.token).lanKey(y.ns as NamespaceId);
    const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

    const dirA = join(scratch, 'a');
    const dirB = join(scratch, 'b');
    const dirC = join(scratch, 'c');
    const stateA = `${dirA}.nearsync`;
    const stateB = `${dirB}.nearsync`;
    const stateC = `${dirC}.nearsync`;
    await mkdir(dirA, { recursive: true });
    const files = new Map<string, Buffer>([
      ['big.bin', randomBytes(10 * MiB + 77)],
      ['small.txt', Buffer.from('hello from A\n')],
    ]);
    for (const [path, bytes] of files) await writeFile(join(dirA, path), bytes);
    const lan = { port: udpPort, tcpPort: 0, broadcast: broadcast() };

    const a = daemons.start({ netns: harness.ns, server: server.hostUrl, invite: x.inviteUrl, dir: dirA, lan });
    await a.waitFor(new RegExp(`in sync at journal entry ${files.size}\\b`), SYNC_MS);
    const statusA0 = await statusWhen(stateA, 'A on the LAN', () => true, [a]);
    expect((await stat(join(stateA, 'lan-status.json'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(stateA, 'lan-peer.json'))).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(join(stateA, 'lan-peer.json'), 'utf8')).peerId).toBe(statusA0.peerId);

    // C: a daemon of workspace Y (its own UDP port: it is not part of A and B's discovery)
    // whose block store also holds one of X's blocks.
    // (A itself keeps no copy: it serves its blocks from its files.)
    const xBytes = files.get('big.bin')!.subarray(0, 4 * MiB);
    const xBlock = sha256(xBytes);
    await mkdir(join(stateC, 'blocks', xBlock.slice(0, 2)), { recursive: true, mode: 0o700 });
    await writeFile(join(stateC, 'blocks', xBlock.slice(0, 2), xBlock), xBytes);
    await mkdir(dirC, { recursive: true });
    const yFile = randomBytes(100_000);
    await writeFile(join(dirC, 'y.bin'), yFile);
    const c = daemons.start({ netns: harness.ns, server: server.hostUrl, invite: y.inviteUrl, dir: dirC, lan: { ...lan, port: udpPort + 1 } });
    await c.waitFor(/in sync at journal entry 1\b/, SYNC_MS);
    await statusWhen(stateC, 'C on the LAN', () => true, [c]);

    // The attacker keeps A's adverts, to replay one.
    await agent.request({ cmd: 'capture', port: udpPort, peerId: statusA0.peerId });

    // A slower LAN (the namespace's loopback) keeps B's sync going while the attacks run.
    await tc('qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', '20mbit', 'burst', '256kb', 'latency', '400ms');
    const servedBefore = served();
    const b = daemons.start({ netns: harness.ns, server: server.hostUrl, invite: x.inviteUrl, dir: dirB, lan });
    const all = [a, b, c];
    await b.waitFor(new RegExp(`LAN: peer ${statusA0.peerId.slice(0, 8)} at `), SYNC_MS);
    const statusB0 = await statusWhen(stateB, 'B on the LAN', () => true, all);

    const blocksOfB = (await storedBlocks(stateB)).length;
    // ---- UDP, while B syncs: garbage, oversized, a replay of A's latest advert, a forgery.
    const { datagrams } = (await agent.request({ cmd: 'captured' })) as { datagrams: string[] };
    expect(datagrams.length).toBeGreaterThan(0);
    const send = (bytes: Uint8Array) => agent.request({ cmd: 'send', hex: hex(bytes), to: broadcast(), port: udpPort });
    await send(randomBytes(200));
    await send(randomBytes(LAN_ADVERT_MAX_BYTES + 500));
    await send(Buffer.from(datagrams.at(-1)!, 'hex'));
    const forgedHeader = { peerId: randomBytes(16), tcpPort: tcpPortOf(a), epoch: lanAdvertEpoch(Date.now()), sequence: 1 };
    const wrongKey = deriveAdvertKey(randomBytes(32));
    await send(encodeLanAdvert({ ...forgedHeader, entries: [{ tag: advertTag(wrongKey, forgedHeader, 999), cursor: 999 }] }));
    for (const [who, state] of [['B', stateB], ['A', stateA]] as const) {
      const drops = await statusWhen(state, `${who} counting the datagrams`, (s) => s.discovery.malformed >= 1 && s.discovery.oversized >= 1 && s.discovery.unknown_tag >= 1, all);
      expect(drops.discovery).toMatchObject({ malformed: 1, oversized: 1, unknown_tag: 1, stale: 0 });
    }
    // B had heard that advert of A's; A hears it as its own.
    expect((await statusWhen(stateB, 'B refusing the replay', (s) => s.discovery.replay >= 1, all)).discovery.replay).toBe(1);
    expect((await statusWhen(stateA, 'A dropping its own advert', (s) => s.discovery.own >= 1, all)).discovery.own).toBeGreaterThan(0);

    // ---- TCP against A.
    const portA = tcpPortOf(a);
    const atA = { host: '127.0.0.1', port: portA };
    // No key at all, and a key of another workspace: the TLS handshake fails.
    expect(await agent.tcp({ ...atA, from: '127.0.0.5', attack: 'stranger' })).toMatchObject({ handshake: 'failed' });
    expect(await agent.tcp({ ...atA, from: '127.0.0.5', attack: 'member', ns: y.ns, lanKey: hex(yKey), peerId: hex(randomBytes(16)), then: 'wait', waitMs: 100 })).toMatchObject({ handshake: 'failed' });
    await statusWhen(stateA, 'A refusing both handshakes', (s) => s.blockService.refused.unknown_identity === 2, all);

    // A member of X claiming B's peer id sends an oversized frame after the hello: banned,
    // but as B's id at the attacker's address only.
    const asB = { ...atA, from: '127.0.0.2', attack: 'member', ns: x.ns, lanKey: hex(xKey), peerId: statusB0.peerId };
    expect(await agent.tcp({ ...asB, then: 'oversize' })).toMatchObject({ handshake: 'ok', hello: true, closed: true });
    // A member with its own id sends a frame that is no frame after the hello: banned too.
    const garbler = hex(randomBytes(16));
    expect(await agent.tcp({ ...atA, from: '127.0.0.3', attack: 'member', ns: x.ns, lanKey: hex(xKey), peerId: garbler, then: 'garbage' })).toMatchObject({
      handshake: 'ok',
      hello: true,
      closed: true,
    });
    let statusA = await statusWhen(stateA, 'A banning both', (s) => s.bans.length === 2 && s.blockService.refused.oversize === 1 && s.blockService.refused.bad_frame === 1, all);
    expect(statusA.bans.map(({ peerId, address }) => ({ peerId, address })).sort((p, q) => p.address.localeCompare(q.address))).toEqual([
      { peerId: statusB0.peerId, address: '127.0.0.2' },
      { peerId: garbler, address: '127.0.0.3' },
    ]);
    // Back from the banned address under the banned id, with a perfect hello: dropped at once.
    expect(await agent.tcp({ ...asB, then: 'wait' })).toMatchObject({ handshake: 'ok', closed: true });
    await statusWhen(stateA, 'A refusing the banned peer', (s) => s.refusedBanned === 1, all);

    // ---- TCP against C, as a member of Y only: a block C holds for X is not served on a Y connection.
    const yHash = sha256(yFile);
    // X's block is in C's block store; Y's own block only in y.bin, which C serves it from.
    expect(await storedBlocks(stateC)).toContain(xBlock);
    const requests = await agent.tcp({
      host: '127.0.0.1',
      port: tcpPortOf(c),
      from: '127.0.0.6',
      attack: 'member',
      ns: y.ns,
      lanKey: hex(yKey),
      peerId: hex(randomBytes(16)),
      then: 'requests',
      requests: [
        { ns: y.ns, hash: xBlock }, // X's block asked as Y's
        { ns: x.ns, hash: xBlock }, // X's block asked as X's, on a connection proven for Y
        { ns: y.ns, hash: yHash }, // Y's own block: served (the connection is a real member's)
      ],
    });
    expect(requests).toMatchObject({ handshake: 'ok', hello: true });
    expect(requests.answers.filter((answer) => !answer.endsWith(':data-started')).sort()).toEqual(['1:nack:not_found', '2:nack:forbidden', '3:data']);
    const statusC = await statusWhen(stateC, 'C counting the refused requests', (s) => s.blockService.nacked.not_found === 1 && s.blockService.nacked.forbidden === 1, all);
    expect(statusC.bans).toEqual([]);

    const blocksOfBAfterAttacks = (await storedBlocks(stateB)).length;

    // ---- The honest sync: complete, byte-identical, every block from A.
    try {
      for (const [path, bytes] of files) {
        await until(async () => (await contentOf(join(dirB, path))) === sha256(bytes), SYNC_MS, `${path} at B`).catch((error: Error) => {
          throw new Error(`${error.message}\n--- A ---\n${a.output}\n--- B ---\n${b.output}`);
        });
      }
    } finally {
      await tc('qdisc', 'del', 'dev', 'lo', 'root').catch(() => undefined);
    }
    console.log(`hostile LAN: B held ${blocksOfB} of 4 blocks when the attacks began, ${blocksOfBAfterAttacks} when they ended`);
    expect(served()).toBe(servedBefore);
    // B is neither banned nor cut off at its own address; its link to A is still up.
    statusA = await statusWhen(stateA, 'A still linked to B', (s) => s.peers.some((p) => p.peerId === statusB0.peerId && p.links > 0), all);
    expect(statusA.bans.some((ban) => ban.peerId === statusB0.peerId && ban.address !== '127.0.0.2')).toBe(false);
    const statusB = await statusWhen(stateB, 'B with its link to A', (s) => s.peers.some((p) => p.peerId === statusA0.peerId && p.active), all);
    expect(statusB.bans).toEqual([]);

    // A keeps serving B after all that: a new file of A's reaches B.
    const later = randomBytes(2 * MiB + 3);
    await writeFile(join(dirA, 'later.bin'), later);
    await until(async () => (await contentOf(join(dirB, 'later.bin'))) === sha256(later), SYNC_MS, 'later.bin at B').catch((error: Error) => {
      throw new Error(`${error.message}\n--- A ---\n${a.output}\n--- B ---\n${b.output}`);
    });
    console.log(`hostile LAN: server block bytes for B's first sync 0; for the later file ${served() - servedBefore}`);
    for (const daemon of all) expect(daemon.output).not.toMatch(/nearsync peer: /);
    expect(await b.stop()).toBe(0);
    expect(await c.stop()).toBe(0);
    expect(await a.stop()).toBe(0);
  }, 240_000);
});
