import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCKS_PER_FILE, parseJournalPage } from '../../src/protocol/index.ts';
import { api, commitFile, createWorkspace, head, makeBlock, putBlock, startHarness, storedState, type Harness, type Member } from './helpers.ts';
import { BACKEND_CASES } from '../support/backend-cases.ts';

describe.each(BACKEND_CASES)('commit API on $name', (backendCase) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
  });
  afterAll(async () => {
    await h.stop();
  });

  const commit = (m: Member, json: unknown) => api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, json });
  const H = (c: string) => c.repeat(64);

  describe('commit', () => {
    it('asks for missing blocks (deduplicated, in order), then commits once they are uploaded', async () => {
      const m = await createWorkspace(h.url);
      const [b1, b2, b3] = [makeBlock(1000), makeBlock(2000), makeBlock(3000)];
      await putBlock(h.url, m.token, b2);
      const request = { path: 'docs/report.pdf', size: 1000 + 2000 + 1000 + 3000, mtime: 1_700_000_000_000, blocks: [b1.hash, b2.hash, b1.hash, b3.hash] };

      const before = await storedState(h);
      const need = await commit(m, request);
      expect(need.status).toBe(409);
      expect(need.body).toEqual({ error: 'need_blocks', message: expect.any(String), need: [b1.hash, b3.hash] });
      expect(await storedState(h)).toEqual(before);
      expect(await head(h.url, m)).toBe(0);

      await putBlock(h.url, m.token, b1);
      expect((await commit(m, request)).body).toEqual({ need: [b3.hash], error: 'need_blocks', message: expect.any(String) });
      await putBlock(h.url, m.token, b3);
      const ok = await commit(m, request);
      expect(ok.status).toBe(200);
      expect(ok.body).toEqual({ sjid: 1 });
      const page = await api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal`, { token: m.token });
      expect(page.body.entries).toEqual([{ sjid: 1, ...request, deleted: false }]);
    });

    it('answers 400 size_mismatch when the stored blocks do not add up to size', async () => {
      const m = await createWorkspace(h.url);
      const b = makeBlock(500);
      await putBlock(h.url, m.token, b);
      const before = await storedState(h);
      for (const size of [499, 501]) {
        const res = await commit(m, { path: 'a', size, mtime: 0, blocks: [b.hash] });
        expect(res.status).toBe(400);
        expect(res.body.error).toBe('size_mismatch');
      }
      expect(await storedState(h)).toEqual(before);
      expect((await commit(m, { path: 'a', size: 500, mtime: 0, blocks: [b.hash] })).status).toBe(200);
    });

    it('commits empty files, overwrites, and deletes live paths only', async () => {
      const m = await createWorkspace(h.url);
      expect((await commit(m, { path: 'empty', size: 0, mtime: 1, blocks: [] })).body).toEqual({ sjid: 1 });
      await commitFile(h.url, m, 'f', [makeBlock(10)]);
      await commitFile(h.url, m, 'f', [makeBlock(20)]);
      const del = { path: 'f', size: 0, mtime: 2, blocks: [], deleted: true };
      expect((await commit(m, del)).body).toEqual({ sjid: 4 });

      const before = await storedState(h);
      for (const json of [del, { ...del, path: 'never-existed' }]) {
        const res = await commit(m, json);
        expect(res.status).toBe(409);
        expect(res.body.error).toBe('not_live');
      }
      expect(await storedState(h)).toEqual(before);
      expect(await head(h.url, m)).toBe(4);
      // Recreating a deleted path makes it live again.
      await commitFile(h.url, m, 'f', [makeBlock(30)]);
      expect((await commit(m, del)).body).toEqual({ sjid: 6 });
    });

    it('keeps live state per namespace', async () => {
      const a = await createWorkspace(h.url);
      const b = await createWorkspace(h.url);
      await commitFile(h.url, a, 'shared-name', [makeBlock(10)]);
      const res = await commit(b, { path: 'shared-name', size: 0, mtime: 0, blocks: [], deleted: true });
      expect(res.status).toBe(409);
      expect(await head(h.url, b)).toBe(0);
    });

    const bad: Array<[string, unknown]> = [
      ['dot-dot', { path: '..', size: 0, mtime: 0, blocks: [] }],
      ['dot-dot segment', { path: 'a/../b', size: 0, mtime: 0, blocks: [] }],
      ['absolute', { path: '/etc/passwd', size: 0, mtime: 0, blocks: [] }],
      ['NUL', { path: 'a\u0000b', size: 0, mtime: 0, blocks: [] }],
      ['control', { path: 'a\nb', size: 0, mtime: 0, blocks: [] }],
      ['empty segment', { path: 'a//b', size: 0, mtime: 0, blocks: [] }],
      ['trailing slash', { path: 'a/', size: 0, mtime: 0, blocks: [] }],
      ['empty path', { path: '', size: 0, mtime: 0, blocks: [] }],
      ['path over 4096 bytes', { path: Array.from({ length: 20 }, () => 'x'.repeat(250)).join('/'), size: 0, mtime: 0, blocks: [] }],
      ['segment over 255 bytes', { path: 'x'.repeat(256), size: 0, mtime: 0, blocks: [] }],
      ['not NFC', { path: 'cafe\u0301', size: 0, mtime: 0, blocks: [] }],
      ['backslash', { path: 'a\\b', size: 0, mtime: 0, blocks: [] }],
      ['bad hash', { path: 'a', size: 1, mtime: 0, blocks: ['xyz'] }],
      ['upper-case hash', { path: 'a', size: 1, mtime: 0, blocks: [H('A')] }],
      ['too many blocks', { path: 'a', size: MAX_BLOCKS_PER_FILE + 1, mtime: 0, blocks: Array(MAX_BLOCKS_PER_FILE + 1).fill(H('a')) }],
      ['negative size', { path: 'a', size: -1, mtime: 0, blocks: [] }],
      ['fractional size', { path: 'a', size: 1.5, mtime: 0, blocks: [H('a')] }],
      ['size as string', { path: 'a', size: '0', mtime: 0, blocks: [] }],
      ['size beyond blocks', { path: 'a', size: 4 * 1024 * 1024 + 1, mtime: 0, blocks: [H('a')] }],
      ['size below block count', { path: 'a', size: 1, mtime: 0, blocks: [H('a'), H('b')] }],
      ['negative mtime', { path: 'a', size: 0, mtime: -1, blocks: [] }],
      ['missing mtime', { path: 'a', size: 0, blocks: [] }],
      ['deletion with blocks', { path: 'a', size: 1, mtime: 0, blocks: [H('a')], deleted: true }],
      ['deleted not boolean', { path: 'a', size: 0, mtime: 0, blocks: [], deleted: 'yes' }],
      ['unknown field', { path: 'a', size: 0, mtime: 0, blocks: [], sjid: 7 }],
      ['array body', [{ path: 'a', size: 0, mtime: 0, blocks: [] }]],
      ['null body', null],
    ];
    it.each(bad)('rejects %s with 400 invalid and changes nothing', async (_what, json) => {
      const m = await createWorkspace(h.url);
      await commitFile(h.url, m, 'existing', [makeBlock(10)]);
      const before = await storedState(h);
      const res = await commit(m, json);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid');
      expect(res.body.message).toEqual(expect.any(String));
      expect(await storedState(h)).toEqual(before);
      expect(await head(h.url, m)).toBe(1);
    });

    it.each([
      ['bad JSON', '{"path":', 'application/json', 400, 'bad_json'],
      ['empty body', '', 'application/json', 400, 'bad_json'],
      ['wrong content type', JSON.stringify({ path: 'a', size: 0, mtime: 0, blocks: [] }), 'text/plain', 415, 'unsupported_media_type'],
      ['form content type', 'path=a', 'application/x-www-form-urlencoded', 415, 'unsupported_media_type'],
    ] as Array<[string, string, string, number, string]>)('rejects %s (%i) and changes nothing', async (_what, body, type, status, error) => {
      const m = await createWorkspace(h.url);
      const before = await storedState(h);
      const res = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/commit`, { token: m.token, body, headers: { 'content-type': type } });
      expect(res.status).toBe(status);
      expect(res.body.error).toBe(error);
      expect(await storedState(h)).toEqual(before);
    });

    it('keeps sjids gapless and ordered under 200 concurrent commits to one namespace', async () => {
      const m = await createWorkspace(h.url);
      const block = makeBlock(64);
      await putBlock(h.url, m.token, block);
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => commit(m, { path: `c/${i}`, size: 64, mtime: i, blocks: [block.hash] })),
      );
      for (const res of results) expect(res.status).toBe(200);
      const sjids = results.map((r) => r.body.sjid as number).sort((x, y) => x - y);
      expect(sjids).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      expect(await head(h.url, m)).toBe(200);

      const page = parseJournalPage((await api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=0&limit=1000`, { token: m.token })).body, 0);
      expect(page.entries.map((e) => e.sjid)).toEqual(sjids);
      // Each request got the sjid of its own entry.
      const byPath = new Map(page.entries.map((e) => [e.path, e.sjid]));
      results.forEach((res, i) => expect(byPath.get(`c/${i}` as never)).toBe(res.body.sjid));
    });

    it('counts commits in the metrics', async () => {
      const m = await createWorkspace(h.url);
      const before = h.server.metrics().commits;
      await commitFile(h.url, m, 'one', [makeBlock(1)]);
      await commit(m, { path: 'x', size: 0, mtime: 0, blocks: [], deleted: true }); // refused: not live
      expect(h.server.metrics().commits).toBe(before + 1);
      const metrics = await api(h.url, 'GET', '/api/v1/metrics');
      expect(metrics.body.commits).toBe(before + 1);
    });
  });
});
