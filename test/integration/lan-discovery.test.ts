import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeLanAdvert, encodeLanAdvert, lanAdvertEpoch, type LanAdvertDatagram, type NamespaceId } from '../../src/protocol/index.ts';
import { LanAdvertListener, advertTag, deriveAdvertKey, type LanPeerAdvert } from '../../src/lan/discovery/index.ts';
import { createNamespace, isRoot, stopProcess, type Netns } from '../netns/netns.ts';
import { lanTestUdpPort } from '../support/lan-daemon.ts';
import { until } from '../support/until.ts';

/**
 * LAN discovery over real UDP broadcast, kept off the real network: the peers run in a child
 * process inside a namespace the test makes and broadcast to its veth's /30 broadcast
 * address; the listeners in this process are bound to that broadcast address on the host
 * end, so they hear nothing else.
 */

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const AGENT = fileURLToPath(new URL('../support/lan-udp-agent.ts', import.meta.url));

const NS = 'lanDiscoveryTestNs01' as NamespaceId;
const OTHER_NS = 'lanDiscoveryTestNs02' as NamespaceId;

/** A UDP agent in the namespace (test/support/lan-udp-agent.ts), one JSON command at a time. */
class Agent {
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: Record<string, unknown>) => void>();
  private constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line === 'ready') return;
      const reply = JSON.parse(line) as { id: number };
      this.waiting.get(reply.id)?.(reply);
      this.waiting.delete(reply.id);
    });
  }

  static async start(ns: Netns): Promise<Agent> {
    const child = ns.spawn(process.execPath, ['--import', 'tsx', AGENT], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    const [first] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    if (first !== 'ready') throw new Error(`agent said ${first}`);
    return new Agent(child);
  }

  async request(command: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    const reply = new Promise<Record<string, unknown>>((resolve) => this.waiting.set(id, resolve));
    this.child.stdin!.write(`${JSON.stringify({ id, ...command })}\n`);
    const answer = await reply;
    if (answer.error) throw new Error(`agent: ${answer.error}`);
    return answer;
  }

  async stop(): Promise<void> {
    this.child.stdin!.end();
    await stopProcess(this.child);
  }
}

describe.skipIf(!isRoot())('LAN discovery over UDP broadcast in a network namespace', () => {
  let netns: Netns;
  let agent: Agent;
  let broadcast: string;
  const port = lanTestUdpPort();
  const lanKey = new Uint8Array(randomBytes(32));
  const listeners: LanAdvertListener[] = [];
  let sniffer: Socket;
  const sniffed: Buffer[] = [];

  const heard: LanPeerAdvert[] = [];
  let member: LanAdvertListener;
  let stranger: LanAdvertListener;


  async function listener(key: Uint8Array, onAdvert: (a: LanPeerAdvert) => void): Promise<LanAdvertListener> {
    const l = new LanAdvertListener({ port, bindAddress: broadcast, onAdvert });
    l.setNamespace(NS, key);
    await l.start();
    listeners.push(l);
    return l;
  }

  const advertise = async (cursor: number, tcpPort: number) =>
    (await agent.request({ cmd: 'advertise', ns: NS, lanKey: Buffer.from(lanKey).toString('hex'), cursor, tcpPort, to: broadcast, port, from: netns.nsAddress }))
      .peerId as string;
  const send = (bytes: Uint8Array) => agent.request({ cmd: 'send', hex: Buffer.from(bytes).toString('hex'), to: broadcast, port, from: netns.nsAddress });
  const latest = (peerId: string) => heard.filter((a) => a.peerId === peerId).at(-1);

  beforeAll(async () => {
    netns = await createNamespace();
    broadcast = netns.broadcastAddress;
    agent = await Agent.start(netns);
    member = await listener(lanKey, (a) => heard.push(a));
    stranger = await listener(new Uint8Array(randomBytes(32)), () => {
      throw new Error('a listener without the key accepted an advert');
    });
    // What an eavesdropper on the LAN records, for the replay attack.
    sniffer = createSocket({ type: 'udp4', reuseAddr: true });
    sniffer.on('message', (m) => sniffed.push(m));
    sniffer.bind(port, broadcast);
    await once(sniffer, 'listening');
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    for (const l of listeners) await l.close();
    sniffer?.close();
    await netns?.close();
  }, 30_000);

  let peerA: string;
  let peerB: string;

  it('discovers two advertisers of the namespace with their cursors, TCP ports and source address', async () => {
    peerA = await advertise(5, 40_001);
    peerB = await advertise(12, 40_002);
    await until(() => latest(peerA) !== undefined && latest(peerB) !== undefined, 10_000, 'both adverts');
    expect(latest(peerA)).toMatchObject({ ns: NS, cursor: 5, tcpPort: 40_001, address: netns.nsAddress });
    expect(latest(peerB)).toMatchObject({ ns: NS, cursor: 12, tcpPort: 40_002, address: netns.nsAddress });
    expect(member.peers().map((p) => p.peerId).sort()).toEqual([peerA, peerB].sort());
  });

  it('announces a cursor advance at once, not at the next 30 s period', async () => {
    await agent.request({ cmd: 'cursor', peerId: peerA, ns: NS, cursor: 9 });
    await until(() => latest(peerA)?.cursor === 9, 10_000, 'the advanced cursor');
    expect(latest(peerB)?.cursor).toBe(12);
  });

  it('drops and counts garbage, oversized, truncated, replayed, forged and stale datagrams; the honest peer is still heard', async () => {
    const before = member.counters();
    const honest = sniffed.filter((m) => decodeLanAdvert(m).peerId.every((b, i) => b === Buffer.from(peerA, 'hex')[i])).at(-1)!;
    const decoded = decodeLanAdvert(honest);
    const now = Date.now();
    const sign = (key: Uint8Array, fields: Partial<LanAdvertDatagram>, cursor: number): Uint8Array => {
      const header = { peerId: decoded.peerId, tcpPort: 40_001, epoch: lanAdvertEpoch(now), sequence: decoded.sequence + 1000, ...fields };
      return encodeLanAdvert({ ...header, entries: [{ tag: advertTag(deriveAdvertKey(key), header, cursor), cursor }] });
    };
    const altered = Buffer.from(honest);
    altered.writeUInt16BE(6666, 22); // redirect peers to the attacker's port

    await send(randomBytes(200)); // garbage
    await send(Buffer.concat([Buffer.from('NSLA'), randomBytes(1300)])); // oversized
    await send(honest.subarray(0, honest.length - 3)); // truncated
    await send(honest); // replayed
    await send(altered); // forged: field altered under an honest tag
    await send(sign(randomBytes(32), {}, 999)); // forged: wrong key
    await send(sign(lanKey, { epoch: lanAdvertEpoch(now) - 3 }, 999)); // stale: an old recording
    await send(sign(lanKey, { peerId: randomBytes(16), epoch: lanAdvertEpoch(now) + 3 }, 999)); // from the future

    await until(() => {
      const c = member.counters();
      return c.malformed + c.oversized + c.replay + c.unknown_tag + c.stale - (before.malformed + before.oversized + before.replay + before.unknown_tag + before.stale) >= 8;
    }, 10_000, 'every attack counted');
    const after = member.counters();
    expect(after.malformed - before.malformed).toBe(2);
    expect(after.oversized - before.oversized).toBe(1);
    expect(after.replay - before.replay).toBe(1);
    expect(after.unknown_tag - before.unknown_tag).toBe(2);
    expect(after.stale - before.stale).toBe(2);
    expect(heard.some((a) => a.cursor === 999 || a.tcpPort === 6666)).toBe(false);

    await agent.request({ cmd: 'cursor', peerId: peerA, ns: NS, cursor: 10 });
    await until(() => latest(peerA)?.cursor === 10, 10_000, 'the honest peer after the attacks');
    expect(latest(peerA)).toMatchObject({ tcpPort: 40_001, address: netns.nsAddress });
  });

  it('teaches a listener without the key nothing', async () => {
    expect(stranger.peers()).toEqual([]);
    const counts = stranger.counters();
    expect(counts.accepted).toBe(0);
    // It received the honest adverts (and the attacks) and could match none of them.
    expect(counts.unknown_tag).toBeGreaterThanOrEqual(member.counters().accepted);
  });

  it('a listener of another namespace with the same key learns only its own namespace', async () => {
    const seen: LanPeerAdvert[] = [];
    const other = new LanAdvertListener({ port, bindAddress: broadcast, onAdvert: (a) => seen.push(a) });
    other.setNamespace(OTHER_NS, new Uint8Array(randomBytes(32)));
    other.setNamespace(NS, lanKey);
    await other.start();
    listeners.push(other);
    await agent.request({ cmd: 'cursor', peerId: peerB, ns: NS, cursor: 13 });
    await until(() => seen.some((a) => a.peerId === peerB && a.cursor === 13), 10_000, 'peer B at 13');
    expect(new Set(seen.map((a) => a.ns))).toEqual(new Set([NS]));
  });
});
