import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import { LanAdvertListener, type LanPeerAdvert } from '../../src/lan/discovery/index.ts';
import type { LanStatus } from '../../src/lan/lan-status.ts';
import type { NamespaceId } from '../../src/protocol/index.ts';
import { NetnsHarness, type NetnsTestServer } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { DaemonPool, type DaemonProcess, lanTestUdpPort } from '../support/lan-daemon.ts';
import { createWorkspace, until } from './helpers.ts';

/**
 * A `nearsync peer --lan` daemon in a test-made network namespace, talking to the real
 * server through a proxy in this process that refuses the LAN key (503) until the test lets
 * it through: the daemon syncs over HTTP meanwhile and asks again with backoff. Then it is
 * restarted: same LAN peer id, and a listener that heard it before (bound in this process
 * to the veth's broadcast address) accepts its new adverts rather than dropping them as
 * replays.
 */

const SYNC_MS = 60_000;

describe.skipIf(!isRoot())('nearsync peer --lan: the LAN key retried, the peer id kept', () => {
  let harness: NetnsHarness;
  let server: NetnsTestServer;
  let scratch: string;
  const daemons = new DaemonPool();
  const udpPort = lanTestUdpPort();
  let refuseLanKey = true;
  let lanKeyRefusals = 0;
  let proxyUrl: string;
  let listener: LanAdvertListener | null = null;

  beforeAll(async () => {
    // Read by the daemons this file starts (the env is copied when they are spawned).
    process.env.NEARSYNC_LAN_KEY_RETRY_MS = '200';
    scratch = await mkdtemp(join(tmpdir(), 'nearsync-lan-identity-'));
    harness = await NetnsHarness.start({ buildApp: false });
    server = await harness.startServer();
    const upstream = new URL(server.hostUrl);
    const proxy = await harness.startHttpServer((req, res) => {
      if (refuseLanKey && /\/lan-key$/.test(req.url ?? '')) {
        lanKeyRefusals += 1;
        res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"unavailable"}');
        return;
      }
      const forward = request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    });
    proxyUrl = proxy.hostUrl;
  }, 60_000);

  afterAll(async () => {
    delete process.env.NEARSYNC_LAN_KEY_RETRY_MS;
    await listener?.close();
    await daemons.stopAll();
    await harness?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }, 60_000);

  const broadcast = () => harness.ns.broadcastAddress;
  const readStatus = async (stateDir: string): Promise<LanStatus | null> =>
    JSON.parse(await readFile(join(stateDir, 'lan-status.json'), 'utf8').catch(() => 'null')) as LanStatus | null;
  const withOutput = (daemon: DaemonProcess) => (error: Error) => {
    throw new Error(`${error.message}\n--- daemon ---\n${daemon.output}`);
  };

  it('syncs over HTTP while the LAN key is refused, starts LAN peering once it comes, and keeps its peer id across a restart', async () => {
    const member = await createWorkspace(server.hostUrl, 'lan key retry');
    const lanKey = await new ServerApi(server.hostUrl, member.token).lanKey(member.ns as NamespaceId);
    const dir = join(scratch, 'd');
    const state = `${dir}.nearsync`;
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'note.txt'), 'synced without the LAN\n');
    const lan = { port: udpPort, tcpPort: 0, broadcast: broadcast() };

    let daemon = daemons.start({ netns: harness.ns, server: proxyUrl, invite: member.inviteUrl, dir, lan });
    await daemon.waitFor(/LAN: could not get the workspace's LAN key \(.*503.*\); trying again in \d+ s, syncing over HTTP meanwhile/, SYNC_MS);
    // The HTTP side runs meanwhile: the file is uploaded and committed.
    await daemon.waitFor(/in sync at journal entry 1\b/, SYNC_MS);
    await until(async () => {
      const status = await readStatus(state);
      return status?.lan === 'waiting_for_key' && status.keyAttempts >= 3;
    }, SYNC_MS, 'several attempts recorded in lan-status.json').catch(withOutput(daemon));
    expect(daemon.output).not.toMatch(/LAN: serving blocks/);

    // A listener on the LAN that will hear the daemon's adverts.
    const heard: LanPeerAdvert[] = [];
    listener = new LanAdvertListener({ port: udpPort, bindAddress: broadcast(), onAdvert: (advert) => heard.push(advert) });
    listener.setNamespace(member.ns as NamespaceId, lanKey);
    await listener.start();

    refuseLanKey = false;
    await daemon.waitFor(/LAN: serving blocks on tcp\/\d+/, SYNC_MS);
    let status: LanStatus | null = null;
    await until(async () => (status = await readStatus(state))?.lan === 'on', SYNC_MS, 'LAN peering on').catch(withOutput(daemon));
    const peerId = (status as unknown as { peerId: string }).peerId;
    expect(peerId).toMatch(/^[0-9a-f]{32}$/);
    await until(() => heard.some((advert) => advert.peerId === peerId), SYNC_MS, 'the first run heard').catch(withOutput(daemon));
    expect(lanKeyRefusals).toBeGreaterThanOrEqual(3);

    expect(await daemon.stop(), daemon.output).toBe(0);
    const heardBefore = heard.length;
    const acceptedBefore = listener.counters().accepted;

    // Restarted on its state dir: the same peer id, and its adverts are new to the listener.
    daemon = daemons.start({ netns: harness.ns, server: proxyUrl, dir, lan });
    await daemon.waitFor(new RegExp(`LAN: peer id ${peerId}`), SYNC_MS);
    await until(() => heard.length > heardBefore, SYNC_MS, 'the restarted daemon heard').catch(withOutput(daemon));
    expect(heard.slice(heardBefore).every((advert) => advert.peerId === peerId)).toBe(true);
    expect(listener.counters().accepted).toBeGreaterThan(acceptedBefore);
    expect(listener.counters().replay).toBe(0);
    expect(daemon.output).not.toMatch(/could not get the workspace's LAN key/);
    await daemon.waitFor(/syncing workspace/, SYNC_MS);
    expect(await daemon.stop(), daemon.output).toBe(0);
  }, 180_000);

  it('idle LAN links close on both sides without a ban, and the daemons go on syncing', async () => {
    process.env.NEARSYNC_LAN_IDLE_MS = '1000';
    try {
      const member = await createWorkspace(server.hostUrl, 'lan idle');
      const dirA = join(scratch, 'idle-a');
      const dirB = join(scratch, 'idle-b');
      await mkdir(dirA, { recursive: true });
      const first = randomBytes(3 * 1024 * 1024 + 1);
      await writeFile(join(dirA, 'first.bin'), first);
      const lan = { port: udpPort + 1, tcpPort: 0, broadcast: broadcast() };
      const a = daemons.start({ netns: harness.ns, server: server.hostUrl, invite: member.inviteUrl, dir: dirA, lan });
      await a.waitFor(/in sync at journal entry 1\b/, SYNC_MS);
      const b = daemons.start({ netns: harness.ns, server: server.hostUrl, invite: member.inviteUrl, dir: dirB, lan });
      await b.waitFor(/LAN: (connected to|accepted) [0-9a-f]{8}/, SYNC_MS);
      await until(async () => (await readFile(join(dirB, 'first.bin')).catch(() => null))?.equals(first) === true, SYNC_MS, 'first.bin at B').catch(withOutput(b));

      // Nothing to fetch either way: the link goes idle and is closed, counted, not held against anyone.
      const on = async (dir: string) => (await readStatus(`${dir}.nearsync`)) as (LanStatus & { lan: 'on' }) | null;
      await until(async () => {
        const [sa, sb] = [await on(dirA), await on(dirB)];
        return !!sa && !!sb && sa.idleClosed + sb.idleClosed >= 1 && sa.peers.every((p) => p.links === 0) && sb.peers.every((p) => p.links === 0);
      }, SYNC_MS, 'the idle link closed').catch(withOutput(b));
      for (const dir of [dirA, dirB]) expect((await on(dir))!.bans).toEqual([]);

      // A's next file still reaches B (over a new link if B dials A in time, else from the server).
      const later = randomBytes(1024 * 1024 + 7);
      await writeFile(join(dirA, 'later.bin'), later);
      await until(async () => (await readFile(join(dirB, 'later.bin')).catch(() => null))?.equals(later) === true, SYNC_MS, 'later.bin at B').catch(withOutput(b));
      expect(b.output).not.toMatch(/nearsync peer: |broke the LAN protocol/);
      expect(a.output).not.toMatch(/nearsync peer: |broke the LAN protocol/);
      expect(await b.stop(), b.output).toBe(0);
      expect(await a.stop(), a.output).toBe(0);
    } finally {
      delete process.env.NEARSYNC_LAN_IDLE_MS;
    }
  }, 120_000);
});
