import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { parseJournalPage, type JournalEntry, type NamespaceId } from '../../src/protocol/index.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { createLogger, type Logger } from '../../src/server/log.ts';
import { PgJournalNotifier } from '../../src/server/storage/pg-journal-notifier.ts';
import { parsePostgresUrl } from '../../src/server/storage/pg-target.ts';
import { runStatement } from '../support/pg-test-db.ts';
import { startPrivatePostgres, type PrivatePostgres } from '../support/private-postgres.ts';
import { api, createWorkspace, makeBlock, putBlock, until, type Member } from './helpers.ts';
import { refusal } from './relay-helpers.ts';
import { RelayClient as AppRelayClient } from '../../src/app/peers/relay-client.ts';

/**
 * PostgreSQL goes away under running servers and comes back: requests answer 503 quickly
 * instead of failing or hanging, the pools and the LISTEN connections recover on their own,
 * and the journal stays gapless. The cluster is a private one this file starts and stops.
 */

/** Any request that takes longer than this counts as hanging. */
const HANG_MS = 5_000;

let pgServer: PrivatePostgres;
beforeAll(async () => {
  pgServer = await startPrivatePostgres();
});
afterAll(async () => {
  await pgServer?.destroy();
});

/** A loopback TCP proxy whose open connections can be frozen: kept open, forwarding nothing. */
async function freezableProxy(targetPort: number): Promise<{ port: number; freeze(): void; close(): void }> {
  const live: Array<[Socket, Socket]> = [];
  const frozen: Socket[] = [];
  const server = createServer((downstream) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const socket of [downstream, upstream]) socket.on('error', () => {});
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    live.push([downstream, upstream]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    freeze() {
      for (const [downstream, upstream] of live.splice(0)) {
        downstream.unpipe(upstream);
        upstream.unpipe(downstream);
        downstream.pause();
        upstream.pause();
        frozen.push(downstream, upstream);
      }
    },
    close() {
      for (const socket of [...frozen, ...live.flat()]) socket.destroy();
      server.close();
    },
  };
}

/** A logger that keeps its records, so a test can wait for one. */
function recordingLogger(): Logger & { has(msg: string): boolean; count(msg: string): number } {
  const records: Array<{ msg: string }> = [];
  const logger = createLogger('debug', (line) => records.push(JSON.parse(line)));
  return { ...logger, has: (msg) => records.some((r) => r.msg === msg), count: (msg) => records.filter((r) => r.msg === msg).length };
}

describe('PgJournalNotifier across a PostgreSQL restart', () => {
  it('reconnects by itself, wakes every waiter on reconnect, then hears NOTIFY again', async () => {
    const url = pgServer.url({ schema: 'notifier_restart' });
    const target = parsePostgresUrl(url);
    const logger = recordingLogger();
    const notifier = await PgJournalNotifier.open(target, logger);
    try {
      const ns = 'NNNNNNNNNNNNNNNNNNNNNN' as NamespaceId;
      const notify = (sjid: number) => runStatement(url, 'SELECT pg_notify($1, $2)', [target.channel, `${ns}:${sjid}`]);
      // Listening: a NOTIFY from another connection wakes the waiter.
      const first = notifier.wait(ns, 0, 30_000);
      await notify(1);
      expect(await first).toBe(true);

      // A waiter from before the outage is woken once the listener is back, with no commit:
      // it could have missed one while the listener was deaf.
      const across = notifier.wait(ns, 1, 60_000);
      let settled = false;
      void across.then(() => (settled = true));
      await pgServer.stop('fast');
      await until(() => !notifier.listening, HANG_MS, 'the listener to notice');
      expect(settled).toBe(false);
      await pgServer.start();
      await until(() => notifier.listening, 20_000, 'the listener to reconnect');
      expect(await across).toBe(true);
      expect(logger.count('postgres: journal listener reconnected')).toBe(1);

      const after = notifier.wait(ns, 1, 30_000);
      await notify(2);
      expect(await after).toBe(true);
    } finally {
      await notifier.close();
    }
    expect(notifier.listening).toBe(false);
  });

  it('notices a listening connection that stops answering, and reconnects', async () => {
    const proxy = await freezableProxy(pgServer.port);
    const url = `postgres://postgres@127.0.0.1:${proxy.port}/postgres?schema=notifier_frozen`;
    const target = parsePostgresUrl(url);
    const logger = recordingLogger();
    const notifier = await PgJournalNotifier.open(target, logger, { heartbeatMs: 200, heartbeatTimeoutMs: 500 });
    try {
      const ns = 'FFFFFFFFFFFFFFFFFFFFFF' as NamespaceId;
      const waiting = notifier.wait(ns, 0, 30_000);
      // The link goes silent without closing: no FIN, no RST, nothing delivered either way.
      proxy.freeze();
      await until(() => logger.has('postgres: journal listener stopped answering'), HANG_MS, 'the heartbeat to fail');
      expect(await waiting).toBe(true);
      expect(logger.has('postgres: journal listener reconnected')).toBe(true);
      const after = notifier.wait(ns, 0, 30_000);
      await runStatement(pgServer.url(), 'SELECT pg_notify($1, $2)', [target.channel, `${ns}:1`]);
      expect(await after).toBe(true);
    } finally {
      await notifier.close();
      proxy.close();
    }
  });

  it('ignores payloads that are not journal notifications', async () => {
    const url = pgServer.url({ schema: 'notifier_payloads' });
    const target = parsePostgresUrl(url);
    const notifier = await PgJournalNotifier.open(target, recordingLogger());
    try {
      const ns = 'PPPPPPPPPPPPPPPPPPPPPP' as NamespaceId;
      const waiting = notifier.wait(ns, 0, 1_000);
      for (const payload of ['', 'garbage', `${ns}`, `${ns}:`, `${ns}:0`, `${ns}:01`, `${ns}:1e3`, `${ns}:99999999999999999`, `bad ns!:5`]) {
        await runStatement(url, 'SELECT pg_notify($1, $2)', [target.channel, payload]);
      }
      expect(await waiting).toBe(false);
    } finally {
      await notifier.close();
    }
  });
});

describe('the HTTP API across a PostgreSQL outage (two instances)', () => {
  const schema = 'outage';
  let dataDirs: string[] = [];
  let a: RunningServer;
  let b: RunningServer;
  let bLogger: ReturnType<typeof recordingLogger>;
  beforeAll(async () => {
    dataDirs = await Promise.all([0, 1].map(() => mkdtemp(join(tmpdir(), 'nearsync-pg-outage-'))));
    const backends = { databaseUrl: pgServer.url({ schema }) };
    bLogger = recordingLogger();
    a = await startServer({ dataDir: dataDirs[0], backends, logger: recordingLogger() });
    b = await startServer({ dataDir: dataDirs[1], backends, logger: bLogger });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    for (const dir of dataDirs) await rm(dir, { recursive: true, force: true });
  });

  const commitEmpty = (server: RunningServer, m: Member, path: string) =>
    api(server.url, 'POST', `/api/v1/ns/${m.ns}/commit`, {
      token: m.token,
      json: { path, size: 0, mtime: 1, blocks: [] },
      signal: AbortSignal.timeout(HANG_MS),
    });

  async function wholeJournal(server: RunningServer, m: Member): Promise<JournalEntry[]> {
    const entries: JournalEntry[] = [];
    for (let cursor = 0; ; ) {
      const res = await api(server.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=${cursor}&limit=1000`, { token: m.token });
      const page = parseJournalPage(res.body, cursor);
      entries.push(...page.entries);
      cursor = page.cursor;
      if (!page.more) return entries;
    }
  }

  it('answers 503 unavailable with Retry-After while down, recovers without a restart, and loses or repeats no sjid', async () => {
    const m = await createWorkspace(a.url, 'Outage');
    const block = makeBlock(1000);
    for (const server of [a, b]) await putBlock(server.url, m.token, block);
    const okBefore = await api(a.url, 'POST', `/api/v1/ns/${m.ns}/commit`, {
      token: m.token,
      json: { path: 'before.bin', size: 1000, mtime: 1, blocks: [block.hash] },
    });
    expect(okBefore.body).toEqual({ sjid: 1 });

    // Commits keep arriving at both instances throughout the outage.
    const acknowledged = new Map<number, string>();
    const repeats: number[] = [];
    const unexpected: string[] = [];
    let running = true;
    let attempts = 0;
    const committers = [a, b].map(async (server, which) => {
      for (let i = 0; running; i++) {
        const path = `during/${which}/${i}`;
        attempts++;
        try {
          const res = await commitEmpty(server, m, path);
          if (res.status === 200) {
            if (acknowledged.has(res.body.sjid)) repeats.push(res.body.sjid);
            acknowledged.set(res.body.sjid, path);
          } else if (res.status !== 503 || res.body.error !== 'unavailable') {
            unexpected.push(`${res.status} ${JSON.stringify(res.body)}`);
          } else {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        } catch (err) {
          unexpected.push(`request failed: ${(err as Error).message}`);
        }
      }
    });

    await until(() => acknowledged.size >= 10, 20_000, 'commits before the outage');
    await pgServer.stop('fast');
    const duringOutage = attempts;

    // Every kind of request, on both instances, answers 503 promptly.
    const hash = block.hash;
    for (const server of [a, b]) {
      const requests: Array<[string, string, Record<string, unknown>]> = [
        ['POST', '/api/v1/workspaces', { json: { name: 'new' } }],
        ['POST', '/api/v1/join', { json: { invite: m.invite } }],
        ['GET', `/api/v1/ns/${m.ns}`, { token: m.token }],
        ['GET', `/api/v1/ns/${m.ns}/journal?cursor=0`, { token: m.token }],
        ['GET', `/api/v1/ns/${m.ns}/journal?cursor=1&wait=20`, { token: m.token }],
        ['POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json: { path: 'x', size: 0, mtime: 0, blocks: [] } }],
        ['POST', `/api/v1/ns/${m.ns}/invite`, { token: m.token }],
        ['POST', '/api/v1/blocks/missing', { token: m.token, json: { hashes: [hash] } }],
        ['PUT', `/api/v1/blocks/${hash}`, { token: m.token, body: block.bytes }],
        ['GET', `/api/v1/blocks/${hash}?ns=${m.ns}`, { token: m.token }],
      ];
      for (const [method, path, init] of requests) {
        const res = await api(server.url, method, path, { ...init, signal: AbortSignal.timeout(HANG_MS) });
        expect(res.status, `${method} ${path}`).toBe(503);
        expect(res.body.error).toBe('unavailable');
        expect(res.headers.get('retry-after')).toBe('1');
      }
    }
    // The relay cannot look tokens up either: it refuses the handshake as temporary, and the
    // app's relay client keeps trying until it is let in.
    expect((await refusal(a.url, { tokens: [m.token] })).message).toBe('unavailable');
    const refusals: string[] = [];
    let welcomed = false;
    const appRelay = new AppRelayClient(a.url, [m.token], 'outage test', {
      welcome: () => (welcomed = true),
      peers: () => undefined,
      advert: () => undefined,
      peerLeft: () => undefined,
      signal: () => undefined,
      relayError: () => undefined,
      disconnected: (reason) => refusals.push(reason),
    });
    onTestFinished(() => appRelay.close());
    await until(() => refusals.includes('unavailable'), 10_000, 'the app relay client refused as unavailable');
    // Health does not touch the database.
    expect((await api(a.url, 'GET', '/api/v1/health')).status).toBe(200);
    await until(() => attempts > duringOutage + 4, 20_000, 'commits refused during the outage');

    await pgServer.start();
    await until(() => welcomed, 30_000, 'the app relay client let in after the outage');
    appRelay.close();
    for (const server of [a, b]) {
      await until(async () => (await api(server.url, 'GET', `/api/v1/ns/${m.ns}`, { token: m.token })).status === 200, 20_000, 'recovery');
    }
    const headAfterRecovery = Math.max(...acknowledged.keys());
    await until(() => acknowledged.size > 0 && Math.max(...acknowledged.keys()) >= headAfterRecovery + 10, 20_000, 'commits after recovery');
    running = false;
    await Promise.all(committers);

    expect(unexpected).toEqual([]);
    expect(repeats).toEqual([]);
    const journalA = await wholeJournal(a, m);
    expect(journalA.map((e) => e.sjid)).toEqual(Array.from({ length: journalA.length }, (_, i) => i + 1));
    // Every acknowledged commit is there under its sjid. (A commit cut off by the shutdown may
    // have been applied without an answer: present in the journal but not acknowledged.)
    const bySjid = new Map(journalA.map((e) => [e.sjid, e.path as string]));
    for (const [sjid, path] of acknowledged) expect(bySjid.get(sjid), `sjid ${sjid}`).toBe(path);
    expect(await wholeJournal(b, m)).toEqual(journalA);
    const headA = (await api(a.url, 'GET', `/api/v1/ns/${m.ns}`, { token: m.token })).body.cursor;
    expect(headA).toBe(journalA.length);

    // B's listener is back: a commit on A wakes a long poll on B.
    await until(() => bLogger.has('postgres: journal listener reconnected'), 20_000, "B's listener to reconnect");
    const poll = api(b.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=${headA}&wait=30`, { token: m.token });
    await until(() => b.metrics().journalLongPollsOpen === 1, HANG_MS, 'the poll to wait');
    const started = Date.now();
    const next = await commitEmpty(a, m, 'after.txt');
    expect(next.body).toEqual({ sjid: headA + 1 });
    const woken = await poll;
    expect(woken.body.entries.map((e: JournalEntry) => e.path)).toEqual(['after.txt']);
    expect(Date.now() - started).toBeLessThan(HANG_MS);
  });

  it('answers 503 too when PostgreSQL accepts connections but never answers, and recovers', async () => {
    const m = await createWorkspace(a.url, 'Silent');
    await pgServer.stop('immediate');
    // Something holds the port and says nothing: a hung server, or a proxy to a dead one.
    const accepted = new Set<Socket>();
    const silent = createServer((socket) => {
      accepted.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => silent.listen(pgServer.port, '127.0.0.1', resolve));
    try {
      const res = await api(a.url, 'GET', `/api/v1/ns/${m.ns}`, { token: m.token, signal: AbortSignal.timeout(3 * HANG_MS) });
      expect(res.status).toBe(503);
      expect(res.body.error).toBe('unavailable');
      expect(accepted.size).toBeGreaterThan(0);
    } finally {
      for (const socket of accepted) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
    await pgServer.start();
    await until(async () => (await api(a.url, 'GET', `/api/v1/ns/${m.ns}`, { token: m.token })).status === 200, 30_000, 'recovery');
  });
});
