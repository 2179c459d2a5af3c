import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDeletedFilesResponse } from '../../src/protocol/index.ts';
import { postgresFiles, sqliteFiles } from '../support/backend-cases.ts';
import { api, createWorkspace, makeBlock, putBlock, startHarness, type Harness, type Member, type TestBlock } from './helpers.ts';

/**
 * Recently deleted files (GET /ns/:ns/deleted) against a real server on both metadata
 * engines: which deletions count (the path's latest entry), order, paging, membership and
 * hostile parameters.
 */
describe.each([sqliteFiles, postgresFiles])('recently deleted on $name', (backendCase) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
  });
  afterAll(async () => {
    await h.stop();
  });

  const commit = (m: Member, json: unknown) => api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json });
  /** `token` null: no Authorization header. */
  const deleted = (m: Member, query = '', token: string | null = m.token) =>
    api(h.url, 'GET', `/api/v1/ns/${m.ns}/deleted${query ? `?${query}` : ''}`, { token: token ?? undefined });
  const write = async (m: Member, path: string, block: TestBlock, device = 'Ann laptop', mtime = 1_700_000_000_000) => {
    const res = await commit(m, { path, size: block.bytes.length, mtime, blocks: [block.hash], device });
    expect(res.status).toBe(200);
    return res.body.sjid as number;
  };
  const remove = async (m: Member, path: string, device = 'Bob desk') => {
    const res = await commit(m, { path, size: 0, mtime: 1_700_000_000_500, blocks: [], deleted: true, device });
    expect(res.status).toBe(200);
    return res.body.sjid as number;
  };

  it('lists paths whose latest entry is a deletion, newest first, with the last live version', async () => {
    const m = await createWorkspace(h.url);
    const [a, b, c] = [makeBlock(100), makeBlock(200), makeBlock(300)];
    for (const block of [a, b, c]) await putBlock(h.url, m.token, block);
    expect((await deleted(m)).body).toEqual({ files: [], more: false });

    await write(m, 'docs/a.txt', a); // 1
    await write(m, 'docs/a.txt', b, 'Cy phone', 1_700_000_000_100); // 2: the last live version
    await write(m, 'b.txt', c); // 3
    await write(m, 'kept.txt', c); // 4
    const startedAt = Date.now();
    await remove(m, 'docs/a.txt'); // 5
    await remove(m, 'b.txt', 'Ann laptop'); // 6
    // Deleted, then written again: live, so not listed.
    await remove(m, 'kept.txt'); // 7
    await write(m, 'kept.txt', a); // 8

    const res = await deleted(m);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body).toEqual({
      files: [
        { path: 'b.txt', sjid: 6, deletedAt: expect.any(Number), device: 'Ann laptop', lastSjid: 3, size: 300, mtime: 1_700_000_000_000 },
        { path: 'docs/a.txt', sjid: 5, deletedAt: expect.any(Number), device: 'Bob desk', lastSjid: 2, size: 200, mtime: 1_700_000_000_100 },
      ],
      more: false,
    });
    for (const file of res.body.files) {
      expect(file.deletedAt).toBeGreaterThanOrEqual(startedAt - 1000);
      expect(file.deletedAt).toBeLessThanOrEqual(Date.now() + 1000);
    }
    // What a client accepts.
    expect(parseDeletedFilesResponse(res.body).files.map((f) => f.path)).toEqual(['b.txt', 'docs/a.txt']);

    // Restore = an ordinary commit of the last live version's blocks with parent 0: off the list.
    expect((await commit(m, { path: 'b.txt', size: 300, mtime: 1, blocks: [c.hash], parent: 0 })).status).toBe(200);
    expect((await deleted(m)).body.files.map((f: { path: string }) => f.path)).toEqual(['docs/a.txt']);
  });

  it('pages with limit and before, skipping deletions a later write superseded', async () => {
    const m = await createWorkspace(h.url);
    const block = makeBlock(10);
    await putBlock(h.url, m.token, block);
    for (let i = 0; i < 5; i++) {
      await write(m, `f${i}`, block);
      await remove(m, `f${i}`); // sjids 2, 4, 6, 8, 10
    }
    await write(m, 'f2', block); // f2 is live again (11)
    const first = await deleted(m, 'limit=2');
    expect(first.body.files.map((f: { sjid: number }) => f.sjid)).toEqual([10, 8]);
    expect(first.body.more).toBe(true);
    const second = await deleted(m, 'limit=2&before=8');
    expect(second.body.files.map((f: { path: string }) => f.path)).toEqual(['f1', 'f0']);
    expect(second.body.more).toBe(false);
    expect((await deleted(m, 'before=2')).body).toEqual({ files: [], more: false });
  });

  it('keeps the list to members and refuses hostile parameters with 400 naming the field', async () => {
    const m = await createWorkspace(h.url);
    const stranger = await createWorkspace(h.url);
    const block = makeBlock(10);
    await putBlock(h.url, m.token, block);
    await write(m, 'secret.txt', block);
    await remove(m, 'secret.txt');

    const forbidden = await deleted(m, '', stranger.token);
    expect(forbidden.status).toBe(403);
    expect(JSON.stringify(forbidden.body)).not.toContain('secret');
    const anonymous = await deleted(m, '', null);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await deleted(m, '', 'not-a-token')).status).toBe(401);
    expect((await api(h.url, 'GET', '/api/v1/ns/not-a-namespace/deleted', { token: m.token })).status).toBeGreaterThanOrEqual(400);

    const bad: [string, string][] = [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=01', 'limit'],
      ['limit=1e3', 'limit'],
      ['limit=-1', 'limit'],
      ['limit=', 'limit'],
      ['limit=1&limit=2', 'limit'],
      ['before=0', 'before'],
      ['before=9007199254740992', 'before'],
      ['before=%201', 'before'],
      ['before=1.0', 'before'],
      ['before=abc', 'before'],
      ['path=secret.txt', 'path'],
      ['cursor=1', 'cursor'],
    ];
    for (const [query, field] of bad) {
      const res = await deleted(m, query);
      expect(res.status, query).toBe(400);
      expect(res.body, query).toMatchObject({ error: 'invalid', field });
      expect(res.body.message, query).toBeTruthy();
    }
    expect((await api(h.url, 'POST', `/api/v1/ns/${m.ns}/deleted`, { token: m.token })).status).toBe(405);
  });
});
