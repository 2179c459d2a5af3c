import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, commitFile, createWorkspace, makeBlock, startHarness, until, type Harness } from './helpers.ts';
import { RelayClient } from './relay-helpers.ts';

/** Parses the Prometheus text format into `name{labels}` → value (no HELP/TYPE lines). */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    samples.set(match[1] + (match[2] ?? ''), Number(match[3]));
  }
  return samples;
}

async function scrape(h: Harness): Promise<Map<string, number>> {
  const res = await fetch(`${h.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

let h: Harness;
let other: Harness;
beforeAll(async () => {
  h = await startHarness();
  other = await startHarness();
});
afterAll(async () => {
  await h.stop();
  await other.stop();
});

describe('GET /metrics (Prometheus)', () => {
  it('counts requests by route pattern and status, and exports the server counters', async () => {
    const m = await createWorkspace(h.url);
    const block = makeBlock(5000);
    await commitFile(h.url, m, 'a.txt', [block]);
    expect((await api(h.url, 'GET', `/api/v1/blocks/${block.hash}?ns=${m.ns}`, { token: m.token })).status).toBe(200);
    expect((await api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal`, { token: 'x'.repeat(43) })).status).toBe(401);
    await until(() => h.server.metrics().blockRequestsServed === 1);

    const samples = await scrape(h);
    expect(samples.get('nearsync_http_requests_total{method="POST",route="/api/v1/workspaces",status="201"}')).toBe(1);
    expect(samples.get('nearsync_http_requests_total{method="GET",route="/api/v1/ns/:ns/journal",status="401"}')).toBe(1);
    expect(samples.get('nearsync_http_requests_total{method="POST",route="/api/v1/ns/:ns/commit",status="200"}')).toBe(1);
    expect(samples.get('nearsync_block_bytes_served_total')).toBe(5000);
    expect(samples.get('nearsync_block_bytes_received_total')).toBe(5000);
    expect(samples.get('nearsync_commits_total')).toBe(1);
    expect(samples.get('nearsync_info{metadata="sqlite",blocks="files",relay="in-process"}')).toBe(1);
    expect(samples.get('nearsync_process_resident_memory_bytes')).toBeGreaterThan(0);
    // Raw paths never become label values: namespace ids and hashes stay out of the exposition.
    expect([...samples.keys()].some((key) => key.includes(m.ns) || key.includes(block.hash))).toBe(false);
  });

  it('counts batch uploads, as GET /api/v1/metrics does', async () => {
    const m = await createWorkspace(h.url);
    const blocks = [makeBlock(100), makeBlock(200)];
    const bytes = Buffer.concat(blocks.map((block) => Buffer.concat([Buffer.from(block.hash, 'hex'), Buffer.from([0, 0, 0, block.bytes.length]), block.bytes])));
    const res = await api(h.url, 'POST', '/api/v1/blocks/batch', { token: m.token, body: bytes });
    expect(res.body).toEqual({ created: 2, existing: 0 });
    const samples = await scrape(h);
    const json = (await api(h.url, 'GET', '/api/v1/metrics')).body;
    expect(json.blockBatchesReceived).toBe(1);
    expect(samples.get('nearsync_block_batches_received_total')).toBe(json.blockBatchesReceived);
    expect(samples.get('nearsync_block_bytes_received_total')).toBe(json.blockBytesReceived);
    expect(samples.get('nearsync_http_requests_total{method="POST",route="/api/v1/blocks/batch",status="200"}')).toBe(1);
  });

  it('shows open long polls and relay sockets as gauges, and each instance only its own', async () => {
    const m = await createWorkspace(h.url);
    const poll = new AbortController();
    const polling = api(h.url, 'GET', `/api/v1/ns/${m.ns}/journal?cursor=0&wait=30`, { token: m.token, signal: poll.signal }).catch(() => null);
    const relay = await RelayClient.connect(h.url, { tokens: [m.token], label: 'metrics test' });
    try {
      await until(() => h.server.metrics().journalLongPollsOpen === 1);
      const samples = await scrape(h);
      expect(samples.get('nearsync_journal_long_polls_open')).toBe(1);
      expect(samples.get('nearsync_relay_sockets')).toBe(1);
      const elsewhere = await scrape(other);
      expect(elsewhere.get('nearsync_journal_long_polls_open')).toBe(0);
      expect(elsewhere.get('nearsync_relay_sockets')).toBe(0);
      expect(elsewhere.get('nearsync_commits_total')).toBe(0);
    } finally {
      poll.abort();
      relay.socket.close();
      await polling;
    }
    await until(() => h.server.metrics().relaySockets === 0 && h.server.metrics().journalLongPollsOpen === 0);
    expect((await scrape(h)).get('nearsync_relay_sockets')).toBe(0);
  });

  it('answers 405 to other methods', async () => {
    const res = await fetch(`${h.url}/metrics`, { method: 'POST' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
  });
});
