import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAN_KEY_BYTES, lanKeyBytes, parseLanKeyResponse, type NamespaceId } from '../../src/protocol/index.ts';
import { startServer } from '../../src/server/app.ts';
import { silentLogger } from '../../src/server/log.ts';
import { BACKEND_CASES } from '../support/backend-cases.ts';
import { api, createWorkspace, startHarness, type Harness, type Member } from './helpers.ts';

describe.each(BACKEND_CASES)('LAN key API on $name', (backendCase) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
  });
  afterAll(async () => {
    await h.stop();
  });

  const fetchKey = (base: string, ns: NamespaceId, token?: string) => api(base, 'GET', `/api/v1/ns/${ns}/lan-key`, { token });

  async function keyOf(base: string, m: Member): Promise<string> {
    const res = await fetchKey(base, m.ns, m.token);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    return parseLanKeyResponse(res.body).lanKey;
  }

  it('hands a member 32 bytes, the same every time, also to members who joined later', async () => {
    const m = await createWorkspace(h.url);
    // Concurrent first requests race to create the key; all must agree on one.
    const first = await Promise.all([keyOf(h.url, m), keyOf(h.url, m), keyOf(h.url, m)]);
    expect(new Set(first).size).toBe(1);
    expect(first[0]).toHaveLength(43);
    expect(lanKeyBytes({ lanKey: first[0] })).toEqual(new Uint8Array(Buffer.from(first[0], 'base64url')));
    expect(lanKeyBytes({ lanKey: first[0] })).toHaveLength(LAN_KEY_BYTES);
    expect(await keyOf(h.url, m)).toBe(first[0]);

    const joined = await api(h.url, 'POST', '/api/v1/join', { json: { invite: m.invite } });
    expect(joined.status).toBe(200);
    expect(await keyOf(h.url, { ...m, token: joined.body.token })).toBe(first[0]);
  });

  it('gives every namespace its own key', async () => {
    const [a, b] = [await createWorkspace(h.url), await createWorkspace(h.url)];
    expect(await keyOf(h.url, a)).not.toBe(await keyOf(h.url, b));
  });

  it('refuses a request without a token (401) and a member of another namespace (403)', async () => {
    const [a, b] = [await createWorkspace(h.url), await createWorkspace(h.url)];
    const anonymous = await fetchKey(h.url, a.ns);
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error).toBe('unauthorized');
    expect(anonymous.body).not.toHaveProperty('lanKey');
    const unknownToken = await fetchKey(h.url, a.ns, 'A'.repeat(43));
    expect(unknownToken.status).toBe(401);
    const stranger = await fetchKey(h.url, a.ns, b.token);
    expect(stranger.status).toBe(403);
    expect(stranger.body.error).toBe('forbidden');
    expect(stranger.body).not.toHaveProperty('lanKey');
  });

  it('keeps the key across a restart', async () => {
    const m = await createWorkspace(h.url);
    const before = await keyOf(h.url, m);
    await h.restart();
    expect(await keyOf(h.url, m)).toBe(before);
  });

  it.runIf(backendCase.metadata === 'postgres')('agrees across two instances on one schema', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'nearsync-lan-key-'));
    const second = await startServer({ dataDir, logger: silentLogger, backends: h.backends });
    try {
      for (let round = 0; round < 5; round++) {
        const m = await createWorkspace(h.url);
        // Both instances create the key at once: one wins, both hand out the winner.
        const keys = await Promise.all([keyOf(h.url, m), keyOf(second.url, m), keyOf(h.url, m), keyOf(second.url, m)]);
        expect(new Set(keys).size).toBe(1);
      }
    } finally {
      await second.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('parseLanKeyResponse', () => {
  it.each([
    ['a missing key', {}],
    ['an extra field', { lanKey: 'A'.repeat(43), more: 1 }],
    ['a number', { lanKey: 5 }],
    ['42 characters', { lanKey: 'A'.repeat(42) }],
    ['44 characters', { lanKey: 'A'.repeat(44) }],
    ['padding', { lanKey: `${'A'.repeat(42)}=` }],
    ['standard base64', { lanKey: `${'A'.repeat(41)}+A` }],
    ['a non-canonical last character', { lanKey: `${'A'.repeat(42)}B` }],
  ])('refuses %s', (_label, body) => {
    expect(() => parseLanKeyResponse(body)).toThrow(/lanKey|body/);
  });
});
