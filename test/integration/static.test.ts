import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, rawRequest, startHarness, type Harness } from './helpers.ts';

let h: Harness;
let root: string;
const INDEX = '<!doctype html><title>nearsync</title>';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'nearsync-static-'));
  const site = join(root, 'dist');
  await mkdir(join(site, 'assets'), { recursive: true });
  await writeFile(join(site, 'index.html'), INDEX);
  await writeFile(join(site, 'assets', 'app-3f9a1c.js'), 'console.log(1)');
  await writeFile(join(site, 'assets', 'app-3f9a1c.css'), 'body{}');
  await writeFile(join(site, 'favicon.svg'), '<svg/>');
  await writeFile(join(site, '.env'), 'SECRET=1');
  await writeFile(join(root, 'secret.txt'), 'outside the static dir');
  h = await startHarness({ staticDir: site });
});
afterAll(async () => {
  await h.stop();
  await rm(root, { recursive: true, force: true });
});

describe('static web app', () => {
  it('serves index.html at / and for client-side routes', async () => {
    for (const path of ['/', '/w/abcdefghijklmnopqrstuv', '/some/deep/route?x=1']) {
      const res = await fetch(h.url + path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(res.headers.get('cache-control')).toBe('no-cache');
      expect(await res.text()).toBe(INDEX);
    }
  });

  it('serves files with their content types; hashed assets are immutable', async () => {
    const js = await fetch(`${h.url}/assets/app-3f9a1c.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(await js.text()).toBe('console.log(1)');
    expect((await fetch(`${h.url}/assets/app-3f9a1c.css`)).headers.get('content-type')).toBe('text/css; charset=utf-8');
    const svg = await fetch(`${h.url}/favicon.svg`);
    expect(svg.headers.get('content-type')).toBe('image/svg+xml');
    expect(svg.headers.get('cache-control')).toBe('no-cache');
    expect(svg.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('answers 404 for missing assets and hidden files instead of the app', async () => {
    expect((await fetch(`${h.url}/assets/missing-123.js`)).status).toBe(404);
    expect((await fetch(`${h.url}/.env`)).status).toBe(404);
  });

  it.each(['/../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt', '/assets/..%2f..%2fsecret.txt', '/a/%2E%2E/%2E%2E/secret.txt', '/..\\secret.txt', '/%00'])(
    'refuses traversal %s',
    async (target) => {
      const res = await rawRequest(h.url, 'GET', target);
      expect(res.status).toBe(400);
      expect(res.body.toString()).not.toContain('outside the static dir');
    },
  );

  it('supports HEAD and conditional GET, and refuses other methods', async () => {
    const head = await rawRequest(h.url, 'HEAD', '/');
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(INDEX.length));
    expect(head.body.length).toBe(0);
    const etag = head.headers.etag!;
    expect((await rawRequest(h.url, 'GET', '/', { 'if-none-match': etag })).status).toBe(304);
    const post = await api(h.url, 'POST', '/');
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('keeps /api out of the fallback', async () => {
    const res = await api(h.url, 'GET', '/api/v1/unknown');
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('not_found');
    expect((await api(h.url, 'GET', '/api')).status).toBe(404);
    expect((await api(h.url, 'GET', '/api/v1/health')).body).toEqual({ ok: true });
  });
});
