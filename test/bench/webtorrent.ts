import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import TrackerServer from 'bittorrent-tracker/server';
import type { NetnsHarness } from '../netns/harness.ts';
import type { BrowserKind } from './flags.ts';
import { closeProfiles, collectPageErrors, openProfiles } from './profiles.ts';

/**
 * The outside anchor for browser → browser throughput: WebTorrent 2.x (its bundled browser
 * build, node_modules/webtorrent/dist/webtorrent.min.js) moving the same bytes between two
 * browser profiles of the same kind as the office joiners, in the same network namespace, found
 * through a websocket tracker run by this process. No DHT, LSD, PEX, web seeds, public
 * trackers or STUN servers: the two pages meet only through the local tracker, on host
 * candidates, as the bare data channel's pages do.
 */

const PAGE_DIR = fileURLToPath(new URL('../netns/pages/webtorrent/', import.meta.url));
const WEBTORRENT_PACKAGE = fileURLToPath(new URL('../../node_modules/webtorrent/package.json', import.meta.url));
const WEBTORRENT_BUNDLE = fileURLToPath(new URL('../../node_modules/webtorrent/dist/webtorrent.min.js', import.meta.url));
/** Seed of the page's pseudo-random generator: both ends and every run seed the same bytes. */
const CONTENT_SEED = 0x5eed;
/** WebTorrent moves 256 MiB in tens of seconds; no progress for this long means it is stuck. */
const STALL_MS = 60_000;

interface AnchorPage {
  seed(options: { size: number; seed: number; tracker: string }): Promise<{ sha256: string; torrentFile: string; pieceLength: number; hashSeconds: number }>;
  startLeech(options: { torrentFile: string }): boolean;
  leechResult(): Promise<{ addedAt: number; firstByteAt: number | null; doneAt: number; bytes: number; sha256: string; wires: number }>;
  progress(): Record<string, unknown>;
}
type WithAnchorPage = { webtorrentAnchor: AnchorPage; webtorrentAnchorReady?: boolean };

export interface WebTorrentResult {
  /** MB/s (1e6 bytes) from the leecher's first downloaded byte to its 'done'. */
  mbps: number;
  /** MB/s from adding the torrent (tracker announce, WebRTC connect, then transfer) to 'done'. */
  mbpsFromAdd: number;
  bytes: number;
  pieceLength: number;
  /** Seconds the seeder took to hash the pieces before it could announce. */
  seedHashSeconds: number;
  version: string;
}

export async function measureWebTorrent(harness: NetnsHarness, kind: BrowserKind, bytes: number, log: (message: string) => void): Promise<WebTorrentResult> {
  const tracker = await startTracker(harness);
  const site = await harness.serveFiles({
    '/index.html': `${PAGE_DIR}index.html`,
    '/page.js': `${PAGE_DIR}page.js`,
    '/webtorrent.min.js': WEBTORRENT_BUNDLE,
  });
  const errors: string[] = [];
  const profiles = await openProfiles(harness, kind, 2);
  try {
    const [seeder, leecher] = profiles.map((profile) => profile.page);
    for (const [name, page] of [
      ['seeder', seeder],
      ['leecher', leecher],
    ] as const) {
      collectPageErrors(page, name, errors);
      await page.goto(`${site.origin}/index.html`);
      await page.waitForFunction(() => (window as unknown as WithAnchorPage).webtorrentAnchorReady === true);
    }
    const seeded = await seeder.evaluate(
      (options) => (window as unknown as WithAnchorPage).webtorrentAnchor.seed(options),
      { size: bytes, seed: CONTENT_SEED, tracker: tracker.url },
    );
    log(`webtorrent: seeder hashed ${(bytes / 2 ** 20).toFixed(0)} MiB in ${seeded.hashSeconds.toFixed(1)} s (${seeded.pieceLength / 1024} KiB pieces)`);
    await leecher.evaluate((options) => (window as unknown as WithAnchorPage).webtorrentAnchor.startLeech(options), { torrentFile: seeded.torrentFile });
    const result = await untilDoneOrStalled(
      leecher.evaluate(() => (window as unknown as WithAnchorPage).webtorrentAnchor.leechResult()),
      () => leecher.evaluate(() => (window as unknown as WithAnchorPage).webtorrentAnchor.progress()),
      async () => `webtorrent: download stalled (leecher ${JSON.stringify(await leecher.evaluate(() => (window as unknown as WithAnchorPage).webtorrentAnchor.progress()).catch(String))}, seeder ${JSON.stringify(await seeder.evaluate(() => (window as unknown as WithAnchorPage).webtorrentAnchor.progress()).catch(String))}; ${errors.join('; ') || 'no page errors'})`,
    );
    if (result.bytes !== bytes || result.sha256 !== seeded.sha256) {
      throw new Error(`webtorrent: the leecher read back ${result.bytes} bytes, SHA-256 ${result.sha256}; the seeder seeded ${bytes}, ${seeded.sha256}`);
    }
    if (result.firstByteAt === null) throw new Error('webtorrent: done without a downloaded byte');
    const { version } = JSON.parse(await readFile(WEBTORRENT_PACKAGE, 'utf8')) as { version: string };
    return {
      mbps: bytes / 1e6 / ((result.doneAt - result.firstByteAt) / 1000),
      mbpsFromAdd: bytes / 1e6 / ((result.doneAt - result.addedAt) / 1000),
      bytes,
      pieceLength: seeded.pieceLength,
      seedHashSeconds: seeded.hashSeconds,
      version,
    };
  } finally {
    await closeProfiles(profiles);
    await tracker.close();
  }
}

/** A websocket-only tracker on the host end of the veth, reached in the namespace at ws://localhost:<port>. */
async function startTracker(harness: NetnsHarness): Promise<{ url: string; close(): Promise<void> }> {
  const server = new TrackerServer({ http: false, udp: false, ws: true, stats: false });
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, harness.ns.hostAddress, () => resolve());
    });
    const port = (server.http!.address() as AddressInfo).port;
    const { origin } = await harness.exposePort(port);
    return { url: origin.replace(/^http:/, 'ws:'), close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Waits for `work`, failing when `progress` has not changed for STALL_MS. */
async function untilDoneOrStalled<T>(work: Promise<T>, progress: () => Promise<unknown>, message: () => Promise<string>): Promise<T> {
  let settled = false;
  work.finally(() => (settled = true)).catch(() => undefined);
  const watch = (async () => {
    let last = '';
    let lastChangeAt = Date.now();
    while (!settled) {
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const now = JSON.stringify(await progress().catch(() => null));
      if (now !== last) {
        last = now;
        lastChangeAt = Date.now();
      } else if (Date.now() - lastChangeAt > STALL_MS) {
        throw new Error(await message());
      }
    }
  })();
  return Promise.race([work, watch.then(() => work)]);
}
