import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJournalPage } from '../../src/protocol/index.ts';
import { api, commitFile, createWorkspace, makeBlock, startHarness, until, type Harness, type Member } from './helpers.ts';
import { BACKEND_CASES } from '../support/backend-cases.ts';

describe.each(BACKEND_CASES)('journal API on $name', (backendCase) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
  });
  afterAll(async () => {
    await h.stop();
  });

  const journal = (m: Member, query: string, signal?: AbortSignal) =>
    api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal${query}`, { token: m.token, signal });

  async function workspaceWithFiles(count: number): Promise<Member> {
    const m = await createWorkspace(h.url);
    for (let i = 1; i <= count; i++) await commitFile(h.url, m, `file-${i}.txt`, [makeBlock(100 + i)], 1_700_000_000_000 + i);
    return m;
  }

  describe('journal paging', () => {
    it('returns entries after the cursor in order, limit at a time, with `more`', async () => {
      const m = await workspaceWithFiles(5);
      const first = await journal(m, '?cursor=0&limit=2');
      expect(first.status).toBe(200);
      expect(parseJournalPage(first.body, 0)).toEqual(first.body);
      expect(first.body.entries.map((e: { sjid: number }) => e.sjid)).toEqual([1, 2]);
      expect(first.body.cursor).toBe(2);
      expect(first.body.more).toBe(true);
      expect(first.body.entries[0]).toEqual({
        sjid: 1,
        path: 'file-1.txt',
        size: 101,
        mtime: 1_700_000_000_001,
        blocks: [expect.stringMatching(/^[0-9a-f]{64}$/)],
        deleted: false,
      });

      const second = await journal(m, '?cursor=2&limit=2');
      expect(parseJournalPage(second.body, 2).entries.map((e) => e.sjid)).toEqual([3, 4]);
      expect(second.body.more).toBe(true);
      const third = await journal(m, '?cursor=4&limit=2');
      expect(third.body).toMatchObject({ cursor: 5, more: false });
      expect(third.body.entries.map((e: { path: string }) => e.path)).toEqual(['file-5.txt']);
      const empty = await journal(m, '?cursor=5&limit=2');
      expect(empty.body).toEqual({ entries: [], cursor: 5, more: false });
    });

    it('defaults to cursor 0 and the default page size', async () => {
      const m = await workspaceWithFiles(3);
      const all = await journal(m, '');
      expect(all.body.entries).toHaveLength(3);
      expect(all.body).toMatchObject({ cursor: 3, more: false });
      expect((await journal(m, '?limit=3')).body.more).toBe(false);
    });

    it('records deletions with no blocks', async () => {
      const m = await workspaceWithFiles(1);
      const del = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, {
        token: m.token,
        json: { path: 'file-1.txt', size: 0, mtime: 5, blocks: [], deleted: true },
      });
      expect(del.body).toEqual({ sjid: 2 });
      const page = await journal(m, '?cursor=1');
      expect(page.body.entries).toEqual([{ sjid: 2, path: 'file-1.txt', size: 0, mtime: 5, blocks: [], deleted: true }]);
    });

    it('answers 400 cursor_ahead for a cursor past the head', async () => {
      const m = await workspaceWithFiles(2);
      const res = await journal(m, '?cursor=3');
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('cursor_ahead');
      expect((await journal(m, '?cursor=3&wait=5')).status).toBe(400);
      expect((await journal(m, '?cursor=2')).status).toBe(200);
    });

    it.each([
      'cursor=-1',
      'cursor=01',
      'cursor=1e3',
      'cursor=abc',
      'cursor=%201',
      'cursor=1.0',
      'cursor=',
      'cursor=0x10',
      'cursor=99999999999999999',
      'cursor=0&cursor=0',
      'limit=0',
      'limit=1001',
      'limit=-5',
      'limit=ten',
      'wait=61',
      'wait=1.5',
      'wait=-1',
      'wait=',
    ])('rejects the query %s with 400 invalid', async (query) => {
      const m = await workspaceWithFiles(0);
      const res = await journal(m, `?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid');
    });
  });

  describe('journal long poll', () => {
    it('wakes as soon as a commit lands and returns the entry', async () => {
      const m = await workspaceWithFiles(1);
      const started = Date.now();
      const poll = journal(m, '?cursor=1&wait=20');
      await until(() => h.server.metrics().journalLongPollsOpen === 1, 5000, 'the poll to wait');
      const sjid = await commitFile(h.url, m, 'late.txt', [makeBlock(10)]);
      const res = await poll;
      expect(res.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(res.body.entries.map((e: { path: string }) => e.path)).toEqual(['late.txt']);
      expect(res.body).toMatchObject({ cursor: sjid, more: false });
      expect(h.server.metrics().journalLongPollsOpen).toBe(0);
    });

    it('answers at once when entries already exist', async () => {
      const m = await workspaceWithFiles(2);
      const started = Date.now();
      const res = await journal(m, '?cursor=0&wait=30');
      expect(res.body.entries).toHaveLength(2);
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('returns an empty page after the wait when nothing happens', async () => {
      const m = await workspaceWithFiles(1);
      const started = Date.now();
      const res = await journal(m, '?cursor=1&wait=1');
      const elapsed = Date.now() - started;
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ entries: [], cursor: 1, more: false });
      expect(elapsed).toBeGreaterThanOrEqual(900);
      expect(elapsed).toBeLessThan(4000);
    });

    it('is not woken by commits to another namespace', async () => {
      const a = await workspaceWithFiles(0);
      const b = await workspaceWithFiles(0);
      const started = Date.now();
      const poll = journal(a, '?cursor=0&wait=1');
      await until(() => h.server.metrics().journalLongPollsOpen === 1);
      await commitFile(h.url, b, 'other.txt', [makeBlock(5)]);
      const res = await poll;
      expect(res.body.entries).toEqual([]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    });

    it('frees the waiter when the client goes away', async () => {
      const m = await workspaceWithFiles(0);
      const abort = new AbortController();
      const poll = journal(m, '?cursor=0&wait=30', abort.signal).catch((err: Error) => err);
      await until(() => h.server.metrics().journalLongPollsOpen === 1);
      abort.abort();
      expect(await poll).toBeInstanceOf(Error);
      await until(() => h.server.metrics().journalLongPollsOpen === 0, 5000, 'the waiter to be freed');
      // The namespace still works and later commits still wake new polls.
      const next = journal(m, '?cursor=0&wait=30');
      await until(() => h.server.metrics().journalLongPollsOpen === 1);
      await commitFile(h.url, m, 'after.txt', [makeBlock(7)]);
      expect((await next).body.entries).toHaveLength(1);
    });

    it('many polls of one namespace all wake on one commit', async () => {
      const m = await workspaceWithFiles(0);
      const polls = Array.from({ length: 20 }, () => journal(m, '?cursor=0&wait=20'));
      await until(() => h.server.metrics().journalLongPollsOpen === 20);
      await commitFile(h.url, m, 'fanout.txt', [makeBlock(9)]);
      for (const res of await Promise.all(polls)) expect(res.body.entries).toHaveLength(1);
    });

    it('close() answers open polls with an empty page', async () => {
      const own = await startHarness({ backends: backendCase });
      try {
        const m = await createWorkspace(own.url);
        const started = Date.now();
        const poll = api(own.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=0&wait=30`, { token: m.token });
        await until(() => own.server.metrics().journalLongPollsOpen === 1);
        await own.server.close();
        const res = await poll;
        expect(res.status).toBe(200);
        expect(res.body).toEqual({ entries: [], cursor: 0, more: false });
        expect(Date.now() - started).toBeLessThan(5000);
      } finally {
        await own.stop();
      }
    });
  });
});
