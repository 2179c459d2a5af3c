import { createHash } from 'node:crypto';
import type { Page } from 'playwright-core';
import { ServerApi } from '../../src/engine/server-api.ts';
import { MAX_BLOCK_SIZE, inviteFromLink, type BlockHash } from '../../src/protocol/index.ts';
import type { E2eHarness } from '../e2e/harness.ts';
import { fileRow, joinWithLink } from '../e2e/ui.ts';
import type { NetnsHarness } from '../netns/harness.ts';
import { PseudoRandomFile } from '../support/pseudo-random-file.ts';
import { measureRawChannel } from './raw-channel.ts';
import { median, type BenchRow } from './report.ts';

/**
 * "Open before synced": 1 MiB Range reads at random offsets of a big file this browser has
 * not synced yet, through the file URL (`/w/<ns>/file/big.bin`, the service worker, the
 * page's sync worker, blocks fetched first). Time to first byte is the goal (≤ 1.5 s with
 * the server capped at --egress-mbps; ≤ 0.3 s from a peer holding the file). Baselines from
 * the same run: a plain fetch of one 4 MiB block from the same server (what a read must at
 * least wait for: a whole block, to check its hash), and a bare data channel between the two
 * browsers for the peer row. Every read is checked byte-exact.
 */

const MiB = 1024 * 1024;
const READ_BYTES = MiB;
const READS = 5;
type Log = (message: string) => void;

interface TimedRead {
  status: number;
  synced: string | null;
  firstByteSeconds: number;
  seconds: number;
  sha256: string;
}

/** Offsets spread over the file from a fixed seed (so runs read the same places). */
function offsets(size: number, count: number, seed: number): number[] {
  let state = seed >>> 0;
  const next = () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
  return Array.from({ length: count }, () => Math.floor(next() * (size - READ_BYTES)));
}

function sliceHash(file: PseudoRandomFile, start: number, endInclusive: number): string {
  const hash = createHash('sha256');
  for (let index = Math.floor(start / MAX_BLOCK_SIZE); index * MAX_BLOCK_SIZE <= endInclusive; index++) {
    const blockStart = index * MAX_BLOCK_SIZE;
    const block = file.block(index);
    hash.update(block.subarray(Math.max(0, start - blockStart), Math.min(block.length, endInclusive + 1 - blockStart)));
  }
  return hash.digest('hex');
}

async function timedRangeRead(page: Page, url: string, start: number): Promise<TimedRead> {
  return page.evaluate(
    async ({ url, start, length }) => {
      const began = performance.now();
      const response = await fetch(url, { headers: { Range: `bytes=${start}-${start + length - 1}` } });
      const reader = response.body!.getReader();
      const chunks: Uint8Array[] = [];
      let firstByteSeconds = -1;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (firstByteSeconds < 0) firstByteSeconds = (performance.now() - began) / 1000;
        chunks.push(value);
      }
      const seconds = (performance.now() - began) / 1000;
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await new Blob(chunks as BlobPart[]).arrayBuffer()));
      return {
        status: response.status,
        synced: response.headers.get('x-nearsync-synced'),
        firstByteSeconds,
        seconds,
        sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join(''),
      };
    },
    { url, start, length: READ_BYTES },
  );
}

/** A plain fetch of one block from the server: [seconds to the first byte, seconds to the last]. */
async function timedBlockFetch(page: Page, origin: string, ns: string, token: string, hash: BlockHash): Promise<[number, number]> {
  return page.evaluate(
    async ({ origin, ns, token, hash }) => {
      const began = performance.now();
      const response = await fetch(`${origin}/api/v1/blocks/${hash}?ns=${ns}`, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
      if (!response.ok) throw new Error(`GET answered ${response.status}`);
      const reader = response.body!.getReader();
      let first = -1;
      for (;;) {
        const { done } = await reader.read();
        if (done) break;
        if (first < 0) first = (performance.now() - began) / 1000;
      }
      return [first, (performance.now() - began) / 1000] as [number, number];
    },
    { origin, ns, token, hash },
  );
}

async function readsOf(page: Page, url: string, file: PseudoRandomFile, seed: number, log: Log): Promise<{ reads: TimedRead[]; exact: boolean; unsynced: number }> {
  const reads: TimedRead[] = [];
  let exact = true;
  let unsynced = 0;
  for (const start of offsets(file.size, READS, seed)) {
    const read = await timedRangeRead(page, url, start);
    const ok = read.status === 206 && read.sha256 === sliceHash(file, start, start + READ_BYTES - 1);
    exact &&= ok;
    if (read.synced === '0') unsynced += 1;
    log(`range-read: bytes ${start}+1 MiB: first byte ${read.firstByteSeconds.toFixed(3)} s, all ${read.seconds.toFixed(3)} s, ${ok ? 'exact' : `NOT EXACT (status ${read.status})`}`);
    reads.push(read);
  }
  return { reads, exact, unsynced };
}

function readColumns(result: { reads: TimedRead[]; exact: boolean; unsynced: number }): BenchRow {
  const first = result.reads.map((read) => read.firstByteSeconds);
  return {
    reads: result.reads.length,
    reads_unsynced: result.unsynced,
    first_byte_median_s: median(first),
    first_byte_max_s: Math.max(...first),
    read_1mib_median_s: median(result.reads.map((read) => read.seconds)),
    byte_exact: result.exact ? 'yes' : 'NO',
  };
}

async function waitForFileUrls(page: Page): Promise<void> {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 30_000 });
}

/** Reads from the server, capped at `egressBytesPerSecond`, while the background sync runs. */
export async function benchRangeReadFromServer(harness: E2eHarness, sizeMiB: number, egressBytesPerSecond: number, log: Log): Promise<BenchRow> {
  const server = await harness.startServer({ egressBytesPerSecond });
  const file = new PseudoRandomFile(`range-read ${sizeMiB}`, sizeMiB * MiB);
  const writer = await new ServerApi(server.origin).createWorkspace('range read');
  log(`range-read: uploading ${sizeMiB} MiB to the server from Node`);
  const hashes = await file.commitTo(new ServerApi(server.origin, writer.token), writer.namespaceId, 'big.bin');
  const browser = await harness.newProfileBrowser();
  try {
    // Baseline first, in a page the service worker does not control, before any sync competes.
    const plain = await browser.newPage();
    await plain.goto(`${server.origin}/`);
    const baselines: Array<[number, number]> = [];
    for (const hash of [hashes[1], hashes[hashes.length - 2], hashes[Math.floor(hashes.length / 2)]]) {
      baselines.push(await timedBlockFetch(plain, server.origin, writer.namespaceId, writer.token, hash));
    }
    await plain.close();
    const baselineSeconds = median(baselines.map(([, all]) => all));
    log(`range-read: plain fetch of one 4 MiB block: ${baselines.map(([first, all]) => `${first.toFixed(3)}/${all.toFixed(3)} s`).join(', ')}`);

    const page = await browser.newPage();
    const shareLink = `${server.origin}/w/${writer.namespaceId}#invite=${inviteFromLink(writer.inviteUrl)}`;
    await joinWithLink(page, shareLink, writer.namespaceId);
    await waitForFileUrls(page);
    await fileRow(page, 'big.bin').waitFor();
    const result = await readsOf(page, `/w/${writer.namespaceId}/file/big.bin`, file, 0x5eed, log);
    const columns = readColumns(result);
    return {
      scenario: 'range-read-server',
      size_mib: sizeMiB,
      egress_mbps: (egressBytesPerSecond * 8) / 1e6,
      ...columns,
      goal_first_byte_s: 1.5,
      baseline_block_fetch_s: baselineSeconds,
      ratio: (columns.first_byte_median_s as number) / baselineSeconds,
    };
  } finally {
    await browser.close();
  }
}

/** Reads from a peer (browser A holds the file) in browser B, each its own Chromium, over WebRTC. */
export async function benchRangeReadFromPeer(harness: NetnsHarness, sizeMiB: number, log: Log): Promise<BenchRow> {
  const server = await harness.startServer();
  const file = new PseudoRandomFile(`range-read peer ${sizeMiB}`, sizeMiB * MiB);
  const writer = await new ServerApi(server.hostUrl).createWorkspace('range read peers');
  log(`range-read peer: uploading ${sizeMiB} MiB to the server from Node`);
  await file.commitTo(new ServerApi(server.hostUrl, writer.token), writer.namespaceId, 'big.bin');
  const shareLink = `${server.origin}/w/${writer.namespaceId}#invite=${inviteFromLink(writer.inviteUrl)}`;
  const contextA = await harness.newProfileBrowser();
  const contextB = await harness.newProfileBrowser();
  try {
    const pageA = await contextA.newPage();
    await joinWithLink(pageA, shareLink, writer.namespaceId);
    await fileRow(pageA, 'big.bin').and(pageA.locator('[data-status="synced"]')).waitFor({ timeout: 60 * 60_000 });
    log('range-read peer: A holds the file; B joins');
    const pageB = await contextB.newPage();
    await joinWithLink(pageB, shareLink, writer.namespaceId);
    await waitForFileUrls(pageB);
    await pageB.locator('[data-testid="peer-row"][data-connected="true"]').first().waitFor({ timeout: 60_000 });
    const servedBefore = server.server.metrics().blockBytesServed;
    const result = await readsOf(pageB, `/w/${writer.namespaceId}/file/big.bin`, file, 0xbee5, log);
    const serverBytes = server.server.metrics().blockBytesServed - servedBefore;
    await contextB.close();
    await contextA.close();
    const raw = await measureRawChannel(harness, 'processes', 16 * MiB).catch((error: unknown) => {
      log(`range-read peer: bare data channel failed: ${error instanceof Error ? error.message : String(error)}`);
      return null;
    });
    const columns = readColumns(result);
    // What a read from a peer must at least wait for: one whole block over a bare channel.
    const blockSeconds = raw ? MAX_BLOCK_SIZE / (raw.mbps * 1e6) : null;
    return {
      scenario: 'range-read-peer',
      size_mib: sizeMiB,
      ...columns,
      goal_first_byte_s: 0.3,
      server_block_bytes_during_reads: serverBytes,
      raw_channel_mbps: raw?.mbps ?? null,
      baseline_block_over_channel_s: blockSeconds,
      ratio: blockSeconds ? (columns.first_byte_median_s as number) / blockSeconds : null,
    };
  } finally {
    await contextB.close();
    await contextA.close();
  }
}
