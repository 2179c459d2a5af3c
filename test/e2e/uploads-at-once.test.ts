import { afterAll, beforeAll, expect, test } from 'vitest';
import { E2eHarness, randomBuffer, sha256 } from './harness.ts';
import { createWorkspace, fileRow, saveFileAndHash, uploadThroughPicker, waitForAllSynced, waitForUploadsDone } from './ui.ts';

/**
 * Several large files picked at once: the queue uploads two at a time, each pipelining its
 * blocks, while the engine reads the commits back. Every file must end up listed, stored on
 * this device and byte-exact. (A change that kept the local copies after the commit left the
 * sync worker stalled in about half of such runs: uploads done, the journal never applied.)
 * New paths go unread, for the server to name their blocks; a new version of a known path is
 * hashed first, and only its changed block is sent.
 */

/** Requests the server answered, by method and route, from its Prometheus scrape. */
async function requestsByRoute(origin: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${origin}/metrics`)).text();
  const counts = new Map<string, number>();
  for (const match of text.matchAll(/^nearsync_http_requests_total\{method="(\w+)",route="([^"]+)",status="(\d+)"\} (\d+)$/gm)) {
    const key = `${match[1]} ${match[2]} ${match[3]}`;
    counts.set(key, (counts.get(key) ?? 0) + Number(match[4]));
  }
  return counts;
}

function sent(after: Map<string, number>, before: Map<string, number>, key: string): number {
  return (after.get(key) ?? 0) - (before.get(key) ?? 0);
}

const MiB = 1024 * 1024;
let harness: E2eHarness;

beforeAll(async () => {
  harness = await E2eHarness.start();
});

afterAll(async () => {
  await harness?.close();
});

test('four large files picked together are uploaded, listed, kept and byte-exact', { timeout: 180_000 }, async () => {
  const server = await harness.startServer();
  const page = await (await harness.newBrowser()).newPage();
  await createWorkspace(page, server.origin, 'many large uploads');
  const files = Array.from({ length: 4 }, (_, i) => ({ name: `part-${i}.bin`, bytes: randomBuffer(16 * MiB + 1000 * i + 7) }));
  const paths = await Promise.all(files.map((file) => harness.writeTempFile(file.name, file.bytes)));
  const before = await requestsByRoute(server.origin);
  await uploadThroughPicker(page, paths);
  await waitForUploadsDone(page, files.map((file) => file.name), 120_000);
  const total = files.reduce((sum, file) => sum + file.bytes.length, 0);
  await waitForAllSynced(page, total, 60_000);
  for (const file of files) expect(await fileRow(page, file.name).getAttribute('data-status')).toBe('synced');
  for (const file of [files[0], files[3]]) expect((await saveFileAndHash(page, file.name)).sha256).toBe(sha256(file.bytes));
  // New paths: every block sent once, unread, for the server to name; nothing asked first.
  const afterNew = await requestsByRoute(server.origin);
  const blocks = files.reduce((sum, file) => sum + Math.ceil(file.bytes.length / (4 * MiB)), 0);
  expect(sent(afterNew, before, 'POST /api/v1/blocks 201')).toBe(blocks);
  expect(sent(afterNew, before, 'PUT /api/v1/blocks/:hash 201')).toBe(0);
  expect(sent(afterNew, before, 'POST /api/v1/blocks/missing 200')).toBe(0);
  // Nor fetched back: the local copies were kept from the picked files.
  expect(sent(afterNew, before, 'GET /api/v1/blocks/:hash 200')).toBe(0);

  // A new version of part-1 with one byte changed in its third block: hashed, asked about, and
  // only that block sent.
  const edited = Buffer.from(files[1].bytes);
  edited[2 * 4 * MiB + 10] ^= 0xff;
  await uploadThroughPicker(page, [await harness.writeTempFile('part-1.bin', edited)]);
  await expect.poll(async () => sent(await requestsByRoute(server.origin), afterNew, 'PUT /api/v1/blocks/:hash 201'), { timeout: 60_000 }).toBe(1);
  await expect.poll(async () => (await saveFileAndHash(page, 'part-1.bin')).sha256, { timeout: 60_000 }).toBe(sha256(edited));
  const afterEdit = await requestsByRoute(server.origin);
  expect(sent(afterEdit, afterNew, 'POST /api/v1/blocks 201')).toBe(0);
  expect(sent(afterEdit, afterNew, 'POST /api/v1/blocks/missing 200')).toBeGreaterThan(0);
});
