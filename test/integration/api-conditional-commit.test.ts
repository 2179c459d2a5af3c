import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresFiles, sqliteFiles } from '../support/backend-cases.ts';
import { api, commitFile, createWorkspace, head, makeBlock, putBlock, startHarness, storedState, type Harness, type Member, type TestBlock } from './helpers.ts';

/**
 * Conditional commits (`parent`), device labels and version history, against a real server
 * on both metadata engines: the race rules live in each store's transaction.
 */
describe.each([sqliteFiles, postgresFiles])('conditional commits and history on $name', (backendCase) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
  });
  afterAll(async () => {
    await h.stop();
  });

  const commit = (m: Member, json: unknown) => api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json });
  const commits = (m: Member, list: unknown[]) => api(h.url, 'POST', `/api/v1/ns/${m.ns}/commits`, { token: m.token, json: { commits: list } });
  const history = (m: Member, query: string, token = m.token) => api(h.url, 'GET', `/api/v1/ns/${m.ns}/history?${query}`, { token });
  const file = (path: string, block: TestBlock, extra: Record<string, unknown> = {}) => ({
    path,
    size: block.bytes.length,
    mtime: 1_700_000_000_000,
    blocks: [block.hash],
    ...extra,
  });
  const removal = (path: string, extra: Record<string, unknown> = {}) => ({ path, size: 0, mtime: 1_700_000_000_001, blocks: [], deleted: true, ...extra });
  const stored = async (m: Member, ...blocks: TestBlock[]) => {
    for (const block of blocks) await putBlock(h.url, m.token, block);
  };

  describe('parent on a single commit', () => {
    it('commits when parent is the live sjid (or 0 for a path not live) and answers 409 conflict otherwise, committing nothing', async () => {
      const m = await createWorkspace(h.url);
      const [v1, v2, v3] = [makeBlock(100), makeBlock(200), makeBlock(300)];
      await stored(m, v1, v2, v3);

      expect((await commit(m, file('a.txt', v1, { parent: 0, device: 'Ann laptop' }))).body).toEqual({ sjid: 1 });
      expect((await commit(m, file('a.txt', v2, { parent: 1, device: 'Bob desk' }))).body).toEqual({ sjid: 2 });

      const before = await storedState(h);
      const stale = await commit(m, file('a.txt', v3, { parent: 1, device: 'Ann laptop' }));
      expect(stale.status).toBe(409);
      expect(stale.body).toEqual({
        error: 'conflict',
        message: expect.stringContaining('a.txt is live at entry 2'),
        current: { sjid: 2, path: 'a.txt', size: 200, mtime: 1_700_000_000_000, blocks: [v2.hash], deleted: false, device: 'Bob desk', committedAt: expect.any(Number) },
      });
      const exists = await commit(m, file('a.txt', v3, { parent: 0 }));
      expect(exists.status).toBe(409);
      expect(exists.body.current.sjid).toBe(2);
      const ghost = await commit(m, file('never.txt', v3, { parent: 7 }));
      expect(ghost.status).toBe(409);
      expect(ghost.body).toEqual({ error: 'conflict', message: expect.stringContaining('never.txt is not live'), current: null });
      expect(await storedState(h)).toEqual(before);
      expect(await head(h.url, m)).toBe(2);

      // Without parent a commit behaves as it always did: it replaces whatever is live.
      expect((await commit(m, file('a.txt', v3))).body).toEqual({ sjid: 3 });
    });

    it('takes parent on deletions too; without it a deletion still answers not_live', async () => {
      const m = await createWorkspace(h.url);
      const v1 = makeBlock(50);
      await stored(m, v1);
      expect((await commit(m, file('d.txt', v1, { parent: 0 }))).body).toEqual({ sjid: 1 });
      expect((await commit(m, file('d.txt', v1, { parent: 1 }))).body).toEqual({ sjid: 2 });

      const stale = await commit(m, removal('d.txt', { parent: 1 }));
      expect(stale.status).toBe(409);
      expect(stale.body.error).toBe('conflict');
      expect(stale.body.current.sjid).toBe(2);
      expect((await commit(m, removal('d.txt', { parent: 2, device: 'Ann' }))).body).toEqual({ sjid: 3 });

      const again = await commit(m, removal('d.txt', { parent: 2 }));
      expect(again.status).toBe(409);
      expect(again.body).toMatchObject({ error: 'conflict', current: null });
      const old = await commit(m, removal('d.txt'));
      expect(old.status).toBe(409);
      expect(old.body.error).toBe('not_live');
      // parent 0 matches a path that is not live; the deletion rule then still refuses it.
      const zero = await commit(m, removal('d.txt', { parent: 0 }));
      expect(zero.status).toBe(409);
      expect(zero.body.error).toBe('not_live');
    });

    it('refuses a malformed parent or device with 400 invalid naming the field', async () => {
      const m = await createWorkspace(h.url);
      const v1 = makeBlock(10);
      await stored(m, v1);
      const before = await storedState(h);
      const cases: [Record<string, unknown>, string][] = [
        [{ parent: -1 }, 'commit.parent'],
        [{ parent: 1.5 }, 'commit.parent'],
        [{ parent: '1' }, 'commit.parent'],
        [{ parent: null }, 'commit.parent'],
        [{ parent: 2 ** 53 }, 'commit.parent'],
        [{ device: '' }, 'commit.device'],
        [{ device: '   ' }, 'commit.device'],
        [{ device: 'x'.repeat(41) }, 'commit.device'],
        [{ device: 'evil\nline' }, 'commit.device'],
        [{ device: 'rtl\u202eoverride' }, 'commit.device'],
        [{ device: 7 }, 'commit.device'],
        [{ device: 'x'.repeat(100_000) }, 'commit.device'],
      ];
      for (const [extra, field] of cases) {
        const res = await commit(m, file('f', v1, extra));
        expect(res.status, JSON.stringify(extra).slice(0, 80)).toBe(400);
        expect(res.body).toMatchObject({ error: 'invalid', field });
      }
      const batch = await commits(m, [file('f', v1), file('g', v1, { parent: 'x' })]);
      expect(batch.status).toBe(400);
      expect(batch.body).toMatchObject({ error: 'invalid', field: 'commits[1].parent' });
      expect(await storedState(h)).toEqual(before);
    });
  });

  describe('races', () => {
    it('twenty concurrent commits with the same parent: exactly one 200, the others 409 naming the winner', async () => {
      const m = await createWorkspace(h.url);
      const base = makeBlock(64);
      await stored(m, base);
      expect((await commit(m, file('race.txt', base, { parent: 0 }))).body).toEqual({ sjid: 1 });
      const versions = Array.from({ length: 20 }, (_, i) => makeBlock(100 + i));
      await stored(m, ...versions);

      const results = await Promise.all(versions.map((v, i) => commit(m, file('race.txt', v, { parent: 1, device: `device ${i}` }))));
      const won = results.filter((res) => res.status === 200);
      const lost = results.filter((res) => res.status === 409);
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(19);
      expect(won[0].body).toEqual({ sjid: 2 });
      const winner = results.indexOf(won[0]);
      for (const res of lost) {
        expect(res.body).toMatchObject({ error: 'conflict', current: { sjid: 2, blocks: [versions[winner].hash], device: `device ${winner}` } });
      }
      expect(await head(h.url, m)).toBe(2);
    });

    it('twenty concurrent creations of one new path (parent 0): exactly one 200', async () => {
      const m = await createWorkspace(h.url);
      const versions = Array.from({ length: 20 }, (_, i) => makeBlock(300 + i));
      await stored(m, ...versions);
      const results = await Promise.all(versions.map((v) => commit(m, file('new.txt', v, { parent: 0 }))));
      expect(results.filter((res) => res.status === 200)).toHaveLength(1);
      expect(results.filter((res) => res.status === 409 && res.body.error === 'conflict')).toHaveLength(19);
      expect(await head(h.url, m)).toBe(1);
    });

    it('twenty concurrent batch commits conditioned on one parent: one batch lands whole, the rest none', async () => {
      const m = await createWorkspace(h.url);
      const base = makeBlock(64);
      await stored(m, base);
      await commit(m, file('shared.txt', base, { parent: 0 }));
      const blocks = Array.from({ length: 20 }, (_, i) => makeBlock(500 + i));
      await stored(m, ...blocks);
      const results = await Promise.all(
        blocks.map((b, i) => commits(m, [file(`own-${i}.txt`, b, { parent: 0 }), file('shared.txt', b, { parent: 1 })])),
      );
      expect(results.filter((res) => res.status === 200)).toHaveLength(1);
      for (const res of results.filter((r) => r.status !== 200)) {
        expect(res.status).toBe(409);
        expect(res.body).toMatchObject({ error: 'conflict', index: 1, current: { sjid: 3 } });
      }
      expect(await head(h.url, m)).toBe(3);
    });
  });

  describe('parent in a batch', () => {
    it('refuses the whole batch at the first element whose parent is not live, with its index', async () => {
      const m = await createWorkspace(h.url);
      const [x, y, z] = [makeBlock(10), makeBlock(20), makeBlock(30)];
      await stored(m, x, y, z);
      expect((await commits(m, [file('x', x, { parent: 0 }), file('y', y, { parent: 0 })])).body).toEqual({ sjids: [1, 2] });

      const before = await storedState(h);
      const res = await commits(m, [file('x', z, { parent: 1 }), file('y', z, { parent: 1 }), removal('x', { parent: 9 })]);
      expect(res.status).toBe(409);
      expect(res.body).toEqual({
        error: 'conflict',
        message: expect.stringContaining('commits[1]: y is live at entry 2'),
        index: 1,
        current: { sjid: 2, path: 'y', size: 20, mtime: 1_700_000_000_000, blocks: [y.hash], deleted: false, device: null, committedAt: expect.any(Number) },
      });
      expect(await storedState(h)).toEqual(before);
      expect(await head(h.url, m)).toBe(2);
    });

    it('judges each parent as the elements before it left the path, even an element not yet stored', async () => {
      const m = await createWorkspace(h.url);
      const [a, b] = [makeBlock(11), makeBlock(22)];
      await stored(m, a, b);
      // Element 1 replaces the entry element 0 makes (sjid 1), then element 2 deletes it.
      expect((await commits(m, [file('p', a, { parent: 0 }), file('p', b, { parent: 1 }), removal('p', { parent: 2 })])).body).toEqual({
        sjids: [1, 2, 3],
      });
      // Two creations of one path in a batch: the second finds the first live, and is told so.
      const twice = await commits(m, [file('q', a, { parent: 0, device: 'Ann' }), file('q', b, { parent: 0 })]);
      expect(twice.status).toBe(409);
      expect(twice.body).toMatchObject({
        error: 'conflict',
        index: 1,
        current: { sjid: 4, path: 'q', size: 11, blocks: [a.hash], deleted: false, device: 'Ann', committedAt: expect.any(Number) },
      });
      expect(await head(h.url, m)).toBe(3);
    });
  });

  describe('history', () => {
    it('lists every version of a path newest first, deletions included, with the device that committed each', async () => {
      const m = await createWorkspace(h.url);
      const startedAt = Date.now();
      const [v1, v2, other] = [makeBlock(1000), makeBlock(2000), makeBlock(30)];
      await stored(m, v1, v2, other);
      await commit(m, file('docs/plan.txt', v1, { device: 'Ann laptop' }));
      await commit(m, file('docs/other.txt', other, { device: 'Bob desk' }));
      await commit(m, file('docs/plan.txt', v2, { parent: 1, device: 'Bob desk' }));
      await commit(m, removal('docs/plan.txt', { parent: 3, device: 'Ann laptop' }));
      await commit(m, file('docs/plan.txt', v1)); // an old client: no label

      const res = await history(m, `path=${encodeURIComponent('docs/plan.txt')}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.body).toEqual({
        versions: [
          { sjid: 5, path: 'docs/plan.txt', size: 1000, mtime: 1_700_000_000_000, blocks: [v1.hash], deleted: false, device: null, committedAt: expect.any(Number) },
          { sjid: 4, path: 'docs/plan.txt', size: 0, mtime: 1_700_000_000_001, blocks: [], deleted: true, device: 'Ann laptop', committedAt: expect.any(Number) },
          { sjid: 3, path: 'docs/plan.txt', size: 2000, mtime: 1_700_000_000_000, blocks: [v2.hash], deleted: false, device: 'Bob desk', committedAt: expect.any(Number) },
          { sjid: 1, path: 'docs/plan.txt', size: 1000, mtime: 1_700_000_000_000, blocks: [v1.hash], deleted: false, device: 'Ann laptop', committedAt: expect.any(Number) },
        ],
        more: false,
      });
      // The server's clock, not the device's mtime (which these commits set to 2023): in order, and now.
      const times = (res.body.versions as { committedAt: number }[]).map((v) => v.committedAt).reverse();
      expect(times).toEqual([...times].sort((a, b) => a - b));
      expect(times[0]).toBeGreaterThanOrEqual(startedAt - 1_000);
      expect(times.at(-1)).toBeLessThanOrEqual(Date.now() + 1_000);
      expect((await history(m, 'path=nothing-here')).body).toEqual({ versions: [], more: false });
      // Journal entries keep their shape: the label is history's.
      const page = await api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal`, { token: m.token });
      expect(Object.keys(page.body.entries[0]).sort()).toEqual(['blocks', 'deleted', 'mtime', 'path', 'size', 'sjid']);
    });

    it('pages with limit and before', async () => {
      const m = await createWorkspace(h.url);
      const block = makeBlock(10);
      await stored(m, block);
      for (let i = 0; i < 5; i++) await commit(m, file('n.txt', block, { mtime: i }));
      const first = await history(m, 'path=n.txt&limit=2');
      expect(first.body.versions.map((v: { sjid: number }) => v.sjid)).toEqual([5, 4]);
      expect(first.body.more).toBe(true);
      const second = await history(m, 'path=n.txt&limit=2&before=4');
      expect(second.body.versions.map((v: { sjid: number }) => v.sjid)).toEqual([3, 2]);
      expect(second.body.more).toBe(true);
      const last = await history(m, 'path=n.txt&limit=2&before=2');
      expect(last.body).toMatchObject({ versions: [{ sjid: 1 }], more: false });
    });

    it('keeps a namespace\'s history to its members and refuses hostile parameters with 400', async () => {
      const m = await createWorkspace(h.url);
      const stranger = await createWorkspace(h.url);
      await commitFile(h.url, m, 'a', [makeBlock(10)]);
      expect((await history(m, 'path=a', stranger.token)).status).toBe(403);
      expect((await api(h.url, 'GET', `/api/v1/ns/${m.ns}/history?path=a`)).status).toBe(401);

      const bad: [string, string][] = [
        ['', 'path'],
        ['path=', 'path'],
        ['path=a&path=b', 'path'],
        ['path=..%2Fetc%2Fpasswd', 'path'],
        ['path=%2Fabs', 'path'],
        ['path=a%2F%2Fb', 'path'],
        ['path=a%00b', 'path'],
        ['path=a%0Ab', 'path'],
        ['path=C%3A%5Cwin', 'path'],
        [`path=${'x'.repeat(256)}`, 'path'],
        [`path=${encodeURIComponent('e\u0301')}`, 'path'],
        ['path=a&limit=0', 'limit'],
        ['path=a&limit=1001', 'limit'],
        ['path=a&limit=01', 'limit'],
        ['path=a&limit=1e2', 'limit'],
        ['path=a&limit=-1', 'limit'],
        ['path=a&limit=abc', 'limit'],
        ['path=a&limit=1&limit=2', 'limit'],
        ['path=a&before=0', 'before'],
        ['path=a&before=9007199254740992', 'before'],
        ['path=a&before=%201', 'before'],
        ['path=a&cursor=1', 'cursor'],
      ];
      for (const [query, field] of bad) {
        const res = await history(m, query);
        expect(res.status, query.slice(0, 60)).toBe(400);
        expect(res.body).toMatchObject({ error: 'invalid', field, message: expect.any(String) });
      }
      const tooLong = await history(m, `path=${Array.from({ length: 20 }, () => 'd'.repeat(250)).join('/')}`);
      expect(tooLong.status).toBe(400);
      expect(tooLong.body.field).toBe('path');
      expect((await history(m, 'path=a&limit=1000')).status).toBe(200);
    });
  });
});
