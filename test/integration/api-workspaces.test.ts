import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inviteFromLink, isTokenFormat, parseNamespaceId } from '../../src/protocol/index.ts';
import { api, createWorkspace, rawRequest, startHarness, storedState, type Harness } from './helpers.ts';
import { BACKEND_CASES } from '../support/backend-cases.ts';

describe.each(BACKEND_CASES)('workspaces API on $name', (backendCase) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
  });
  afterAll(async () => {
    await h.stop();
  });

  describe('workspaces', () => {
    it('creates a workspace with an id, a member token and a share link', async () => {
      const res = await api(h.url, 'POST', '/api/v1/workspaces', { json: { name: '  Design team ' } });
      expect(res.status).toBe(201);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      const { namespaceId, name, inviteUrl, token } = res.body;
      expect(namespaceId).toHaveLength(22);
      expect(parseNamespaceId(namespaceId)).toBe(namespaceId);
      expect(name).toBe('Design team');
      expect(isTokenFormat(token)).toBe(true);
      expect(inviteUrl).toMatch(new RegExp(`^${h.url}/w/${namespaceId}#invite=[A-Za-z0-9_-]{22}$`));
      expect(inviteFromLink(inviteUrl)).toHaveLength(22);
    });

    it('stores tokens and invites only as hashes', async () => {
      const m = await createWorkspace(h.url, 'secret keeper');
      const bytes = await h.metadataBytes();
      expect(bytes.includes('secret keeper')).toBe(true); // the dump does hold what was stored
      expect(bytes.includes(m.token)).toBe(false);
      expect(bytes.includes(m.invite)).toBe(false);
    });

    it('builds share links from PUBLIC_URL when set', async () => {
      const other = await startHarness({ backends: backendCase, publicUrl: 'https://sync.example.com/' });
      try {
        const m = await createWorkspace(other.url);
        expect(m.inviteUrl).toMatch(new RegExp(`^https://sync\\.example\\.com/w/${m.ns}#invite=`));
      } finally {
        await other.stop();
      }
    });

    it('builds share links from the Host header, or the listen address when the header is odd', async () => {
      const body = Buffer.from(JSON.stringify({ name: 'x' }));
      const headers = { 'content-type': 'application/json', 'content-length': body.length };
      const good = await rawRequest(h.url, 'POST', '/api/v1/workspaces', { ...headers, host: 'files.lan:8080' }, body);
      expect(JSON.parse(good.body.toString()).inviteUrl).toMatch(/^http:\/\/files\.lan:8080\/w\//);
      const odd = await rawRequest(h.url, 'POST', '/api/v1/workspaces', { ...headers, host: 'evil_host' }, body);
      expect(JSON.parse(odd.body.toString()).inviteUrl.startsWith(`${h.url}/w/`)).toBe(true);
    });

    it.each([
      [{}, 'missing name'],
      [{ name: '' }, 'empty name'],
      [{ name: '   ' }, 'blank name'],
      [{ name: 'a\u0007b' }, 'control character'],
      [{ name: 'x'.repeat(201) }, 'too long'],
      [{ name: 5 }, 'not a string'],
      [{ name: 'ok', admin: true }, 'unknown field'],
      [['name'], 'not an object'],
    ] as Array<[unknown, string]>)('rejects %j (%s) and stores nothing', async (json) => {
      const before = await storedState(h);
      const res = await api(h.url, 'POST', '/api/v1/workspaces', { json });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid');
      expect(typeof res.body.message).toBe('string');
      expect(await storedState(h)).toEqual(before);
    });
  });

  describe('joining and invites', () => {
    it('joins with the invite and gets a fresh token each time', async () => {
      const owner = await createWorkspace(h.url, 'Joinable');
      const a = await api(h.url, 'POST', '/api/v1/join', { json: { invite: owner.invite } });
      const b = await api(h.url, 'POST', '/api/v1/join', { json: { invite: owner.invite } });
      expect(a.status).toBe(200);
      expect(a.body).toEqual({ namespaceId: owner.ns, name: 'Joinable', token: expect.any(String) });
      expect(isTokenFormat(a.body.token)).toBe(true);
      expect(new Set([owner.token, a.body.token, b.body.token]).size).toBe(3);
      const info = await api(h.url, 'GET', `/api/v1/ns/${owner.ns}`, { token: b.body.token });
      expect(info.status).toBe(200);
      expect(info.body).toEqual({ namespaceId: owner.ns, name: 'Joinable', cursor: 0 });
    });

    it.each([
      ['AAAAAAAAAAAAAAAAAAAAAA', 'unknown'],
      ['short', 'malformed'],
      ['A'.repeat(23), 'too long for an invite'],
      ['AAAAAAAAAAAAAAAAAAAA+/', 'not base64url'],
    ] as Array<[string, string]>)('refuses invite %j (%s) with 403 invite_invalid', async (invite) => {
      const before = await storedState(h);
      const res = await api(h.url, 'POST', '/api/v1/join', { json: { invite } });
      expect(res.status).toBe(403);
      expect(res.body.error).toBe('invite_invalid');
      expect(await storedState(h)).toEqual(before);
    });

    it.each([[{}], [{ invite: 42 }], [{ invite: 'x'.repeat(65) }], [{ invite: 'AAAAAAAAAAAAAAAAAAAAAA', extra: 1 }]])(
      'rejects a malformed join body %j',
      async (json) => {
        const res = await api(h.url, 'POST', '/api/v1/join', { json });
        expect(res.status).toBe(400);
        expect(res.body.error).toBe('invalid');
      },
    );

    it('rotating the invite revokes the previous one', async () => {
      const owner = await createWorkspace(h.url, 'Rotating');
      const rotated = await api(h.url, 'POST', `/api/v1/ns/${owner.ns}/invite`, { token: owner.token });
      expect(rotated.status).toBe(200);
      const fresh = inviteFromLink(rotated.body.inviteUrl)!;
      expect(rotated.body.inviteUrl).toBe(`${h.url}/w/${owner.ns}#invite=${fresh}`);
      expect(fresh).not.toBe(owner.invite);

      const old = await api(h.url, 'POST', '/api/v1/join', { json: { invite: owner.invite } });
      expect(old.status).toBe(403);
      expect(old.body.error).toBe('invite_invalid');
      const joined = await api(h.url, 'POST', '/api/v1/join', { json: { invite: fresh } });
      expect(joined.status).toBe(200);

      // A member who joined through the new link can rotate again; the second link dies too.
      const again = await api(h.url, 'POST', `/api/v1/ns/${owner.ns}/invite`, { token: joined.body.token });
      expect(again.status).toBe(200);
      expect((await api(h.url, 'POST', '/api/v1/join', { json: { invite: fresh } })).status).toBe(403);
      // Tokens already handed out stay valid.
      expect((await api(h.url, 'GET', `/api/v1/ns/${owner.ns}`, { token: owner.token })).status).toBe(200);
    });

    it('only members rotate the invite', async () => {
      const a = await createWorkspace(h.url, 'A');
      const b = await createWorkspace(h.url, 'B');
      expect((await api(h.url, 'POST', `/api/v1/ns/${a.ns}/invite`)).status).toBe(401);
      const cross = await api(h.url, 'POST', `/api/v1/ns/${a.ns}/invite`, { token: b.token });
      expect(cross.status).toBe(403);
      expect(cross.body.error).toBe('forbidden');
      expect((await api(h.url, 'POST', '/api/v1/join', { json: { invite: a.invite } })).status).toBe(200);
    });
  });

  describe('authentication', () => {
    it.each([
      [undefined, 'no header'],
      ['Bearer', 'no token'],
      ['Bearer not-a-token', 'garbage'],
      [`Bearer ${'A'.repeat(43)}`, 'well-formed but unknown'],
      [`Basic ${'A'.repeat(43)}`, 'wrong scheme'],
    ] as Array<[string | undefined, string]>)('answers 401 for Authorization %j (%s)', async (authorization) => {
      const m = await createWorkspace(h.url);
      const headers: Record<string, string> = authorization ? { authorization } : {};
      for (const [method, path] of [
        ['GET', `/api/v1/ns/${m.ns}`],
        ['GET', `/api/v1/ns/${m.ns}/journal`],
        ['POST', `/api/v1/ns/${m.ns}/commit`],
        ['POST', '/api/v1/blocks/missing'],
        ['PUT', `/api/v1/blocks/${'a'.repeat(64)}`],
        ['GET', `/api/v1/blocks/${'a'.repeat(64)}?ns=${m.ns}`],
      ]) {
        const res = await api(h.url, method, path, { headers });
        expect(res.status, `${method} ${path}`).toBe(401);
        expect(res.body.error).toBe('unauthorized');
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      }
    });

    it('answers 403 for a valid token of another namespace', async () => {
      const a = await createWorkspace(h.url);
      const b = await createWorkspace(h.url);
      for (const path of [`/api/v1/ns/${a.ns}`, `/api/v1/ns/${a.ns}/journal`]) {
        const res = await api(h.url, 'GET', path, { token: b.token });
        expect(res.status).toBe(403);
        expect(res.body).toEqual({ error: 'forbidden', message: expect.any(String) });
      }
      const commit = await api(h.url, 'POST', `/api/v1/ns/${a.ns}/commit`, {
        token: b.token,
        json: { path: 'x', size: 0, mtime: 0, blocks: [] },
      });
      expect(commit.status).toBe(403);
      expect((await api(h.url, 'GET', `/api/v1/ns/${a.ns}`, { token: a.token })).body.cursor).toBe(0);
    });
  });

  describe('HTTP plumbing', () => {
    it('answers health and sets protective headers', async () => {
      const res = await api(h.url, 'GET', '/api/v1/health');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ ok: true });
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('cache-control')).toBe('no-store');
    });

    it('answers unknown routes with JSON 404 and wrong methods with 405 + Allow', async () => {
      const missing = await api(h.url, 'GET', '/api/v1/nope');
      expect(missing.status).toBe(404);
      expect(missing.body.error).toBe('not_found');
      const noStatic = await api(h.url, 'GET', '/index.html');
      expect(noStatic.status).toBe(404);
      const wrong = await api(h.url, 'DELETE', '/api/v1/workspaces');
      expect(wrong.status).toBe(405);
      expect(wrong.body.error).toBe('method_not_allowed');
      expect(wrong.headers.get('allow')).toBe('POST');
      const wrongBlock = await api(h.url, 'POST', `/api/v1/blocks/${'a'.repeat(64)}`);
      expect(wrongBlock.status).toBe(405);
      expect(wrongBlock.headers.get('allow')).toBe('PUT, GET');
    });

    it('requires application/json bodies, valid JSON, and at most 5 MiB', async () => {
      const before = await storedState(h);
      const text = await api(h.url, 'POST', '/api/v1/workspaces', { body: '{"name":"x"}', headers: { 'content-type': 'text/plain' } });
      expect(text.status).toBe(415);
      expect(text.body.error).toBe('unsupported_media_type');
      const none = await api(h.url, 'POST', '/api/v1/workspaces', { body: '{"name":"x"}' });
      expect(none.status).toBe(415);
      for (const body of ['{"name":', '', 'nul', '{"name":"x"} trailing']) {
        const bad = await api(h.url, 'POST', '/api/v1/workspaces', { body, headers: { 'content-type': 'application/json' } });
        expect(bad.status, body).toBe(400);
        expect(bad.body.error).toBe('bad_json');
      }
      const badUtf8 = await api(h.url, 'POST', '/api/v1/workspaces', {
        body: Buffer.from([0x7b, 0x22, 0x6e, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]),
        headers: { 'content-type': 'application/json' },
      });
      expect(badUtf8.status).toBe(400);
      expect(badUtf8.body.error).toBe('bad_json');
      const huge = await api(h.url, 'POST', '/api/v1/workspaces', {
        body: JSON.stringify({ name: 'x'.repeat(5 * 1024 * 1024) }),
        headers: { 'content-type': 'application/json; charset=utf-8' },
      });
      expect(huge.status).toBe(413);
      expect(huge.body.error).toBe('too_large');
      expect(await storedState(h)).toEqual(before);
      // The connection pool still works after early answers.
      expect((await api(h.url, 'GET', '/api/v1/health')).status).toBe(200);
    });

    it('accepts absolute-form request targets and refuses other non-path targets', async () => {
      const absolute = await rawRequest(h.url, 'GET', `${h.url}/api/v1/health`);
      expect(absolute.status).toBe(200);
      const star = await rawRequest(h.url, 'OPTIONS', '*');
      expect(star.status).toBe(400);
      expect(JSON.parse(star.body.toString()).error).toBe('bad_request');
    });
  });
});
