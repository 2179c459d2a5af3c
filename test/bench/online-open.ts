import type { Page } from 'playwright-core';
import { ServerApi } from '../../src/engine/server-api.ts';
import { inviteFromLink } from '../../src/protocol/index.ts';
import type { E2eHarness } from '../e2e/harness.ts';
import { joinWithLink, waitForAllSynced } from '../e2e/ui.ts';
import { PseudoRandomFile } from '../support/pseudo-random-file.ts';
import type { BenchRow } from './report.ts';

/**
 * Opening an online-only file (its blocks fetched from the server as the file URL is read,
 * through the priority fetch, into the evictable cache) against opening the same file once it
 * is kept (every block already on disk), in the same browser (on-disk profile) and run. Both
 * read the whole file through `/w/<ns>/file/big.bin`; the bytes are checked after the clock
 * stops. The server is on loopback, uncapped. The baseline for the online open is a plain
 * `fetch` of the same blocks from the same server in the same page (four at a time, as the
 * app's download bench does): what the network and the server allow before any hashing or
 * storing.
 */

/** Blocks the plain-fetch baseline has in flight at once. */
const PLAIN_FETCH_PARALLEL = 4;

const MiB = 1024 * 1024;
type Log = (message: string) => void;

async function timedOpen(page: Page, url: string): Promise<{ seconds: number; sha256: string; length: number }> {
  return page.evaluate(async (fileUrl) => {
    const began = performance.now();
    const response = await fetch(fileUrl, { cache: 'no-store' });
    const bytes = await response.arrayBuffer();
    const seconds = (performance.now() - began) / 1000;
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return { seconds, length: bytes.byteLength, sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join('') };
  }, url);
}

/** Seconds for `page` to GET every block of the file with fetch, bodies read and dropped. */
async function timePlainFetch(page: Page, ns: string, token: string, hashes: readonly string[]): Promise<number> {
  return page.evaluate(
    async ({ ns, token, hashes, parallel }) => {
      const began = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: parallel }, async () => {
          while (next < hashes.length) {
            const hash = hashes[next++];
            const response = await fetch(`/api/v1/blocks/${hash}?ns=${ns}`, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
            if (!response.ok) throw new Error(`GET of block ${hash} answered ${response.status}`);
            await response.arrayBuffer();
          }
        }),
      );
      return (performance.now() - began) / 1000;
    },
    { ns, token, hashes, parallel: PLAIN_FETCH_PARALLEL },
  );
}

export async function benchOnlineOpen(harness: E2eHarness, sizeMiB: number, log: Log): Promise<BenchRow> {
  const server = await harness.startServer();
  const file = new PseudoRandomFile(`online-open ${sizeMiB}`, sizeMiB * MiB);
  const writer = await new ServerApi(server.origin).createWorkspace('online open');
  log(`online-open: uploading ${sizeMiB} MiB to the server from Node`);
  const hashes = await file.commitTo(new ServerApi(server.origin, writer.token), writer.namespaceId, 'big.bin');
  const expected = file.sha256();
  const context = await harness.newProfileBrowser();
  try {
    const page = await context.newPage();
    // A quota too small for the workspace makes the join ask; the answer makes it online only.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: 8 * MiB });
    await joinWithLink(page, `${server.origin}/w/${writer.namespaceId}#invite=${inviteFromLink(writer.inviteUrl)}`, writer.namespaceId);
    await page.getByTestId('join-question').waitFor({ state: 'visible', timeout: 120_000 });
    await page.getByTestId('join-online-only').click();
    await page.getByTestId('join-question').waitFor({ state: 'hidden' });
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.origin, quotaSize: 64 * 1024 * MiB });
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 30_000 });
    const url = `/w/${writer.namespaceId}/file/big.bin`;

    const plainSeconds = await timePlainFetch(page, writer.namespaceId, writer.token, hashes);
    log(`online-open: plain fetch of the same blocks, ${plainSeconds.toFixed(2)} s`);
    const servedBefore = (await server.metrics()).blockBytesServed;
    const online = await timedOpen(page, url);
    const servedOnline = (await server.metrics()).blockBytesServed - servedBefore;
    log(`online-open: online only, ${online.seconds.toFixed(2)} s, ${servedOnline} bytes from the server, ${online.sha256 === expected ? 'exact' : 'NOT EXACT'}`);

    await page.getByTestId('keep-select').first().selectOption('keep');
    await waitForAllSynced(page, file.size, 60 * 60_000);
    const kept = await timedOpen(page, url);
    log(`online-open: kept, ${kept.seconds.toFixed(2)} s, ${kept.sha256 === expected ? 'exact' : 'NOT EXACT'}`);
    return {
      scenario: 'online-open',
      size_mib: sizeMiB,
      online_open_s: online.seconds,
      online_mb_per_s: file.size / 1e6 / online.seconds,
      online_server_bytes: servedOnline,
      kept_open_s: kept.seconds,
      kept_mb_per_s: file.size / 1e6 / kept.seconds,
      ratio: online.seconds / kept.seconds,
      plain_fetch_s: plainSeconds,
      plain_fetch_mb_per_s: file.size / 1e6 / plainSeconds,
      // Below 1: the online open is slower than fetching its blocks bare.
      online_to_plain_fetch_ratio: plainSeconds / online.seconds,
      byte_exact: online.sha256 === expected && kept.sha256 === expected && online.length === file.size ? 'yes' : 'NO',
    };
  } finally {
    await context.close();
  }
}
