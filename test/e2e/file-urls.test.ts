import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Page, Request as PwRequest, Response as PwResponse } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import { MAX_BLOCK_SIZE, parseFilePath, type BlockHash, type NamespaceId } from '../../src/protocol/index.ts';
import { PseudoRandomFile } from '../support/pseudo-random-file.ts';
import { E2eHarness, type TestServer } from './harness.ts';
import { commitBytes, seedWorkspace, type SeededWorkspace } from './support/seed-workspace.ts';
import { joinWithLink, showFileFolder, waitForFileStatus } from './ui.ts';

/**
 * File URLs (`/w/<ns>/file/<path>`) answered by the app's service worker, in real Chromium
 * against a real server whose block egress is capped (1 MB/s), so a 40 MiB file stays
 * unsynced for the first part of the test: Range reads then fetch their blocks first.
 */

const EGRESS = 1_000_000;
const BIG = 10 * MAX_BLOCK_SIZE - 12_345;
const HOSTILE_HTML = `<!doctype html><p>hi</p><script>
  localStorage.setItem('pwned-html', '1');
  indexedDB.open('pwned-html-db');
  parent.postMessage('pwned', '*');
</script>`;
const HOSTILE_SVG = `<svg xmlns="http://www.w3.org/2000/svg" onload="localStorage.setItem('pwned-svg-onload','1')">
  <script>localStorage.setItem('pwned-svg', '1'); indexedDB.open('pwned-svg-db');</script>
  <rect width="10" height="10"/>
</svg>`;

interface Fetched {
  status: number;
  headers: Record<string, string>;
  sha256: string;
  length: number;
  text: string;
}

/** fetch() from the app page (through its service worker), the body hashed in the page. */
async function fetchInPage(page: Page, url: string, init: { range?: string; method?: string } = {}): Promise<Fetched> {
  return page.evaluate(
    async ({ url, range, method }) => {
      const response = await fetch(url, { method: method ?? 'GET', headers: range ? { Range: range } : {} });
      const bytes = new Uint8Array(await response.arrayBuffer());
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
      const headers: Record<string, string> = {};
      response.headers.forEach((value, key) => (headers[key] = value));
      const text = bytes.length < 2000 ? new TextDecoder().decode(bytes) : '';
      return { status: response.status, headers, sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join(''), length: bytes.length, text };
    },
    { url, range: init.range, method: init.method },
  );
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

function expectSafeHeaders(headers: Record<string, string>): void {
  expect(headers['content-security-policy']).toBe('sandbox');
  expect(headers['x-content-type-options']).toBe('nosniff');
}

/** A short WebM made in the browser (canvas + MediaRecorder): a real video without a fixture file. */
async function recordWebm(page: Page): Promise<Uint8Array> {
  const bytes = await page.evaluate(async () => {
    const canvas = document.createElement('canvas');
    canvas.width = 160;
    canvas.height = 120;
    const context = canvas.getContext('2d')!;
    const stream = canvas.captureStream(25);
    const recorder = new MediaRecorder(stream, { mimeType: 'video/webm;codecs=vp8' });
    const chunks: Blob[] = [];
    recorder.ondataavailable = (event) => chunks.push(event.data);
    let frame = 0;
    const timer = setInterval(() => {
      context.fillStyle = `hsl(${(frame++ * 17) % 360} 80% 50%)`;
      context.fillRect(0, 0, 160, 120);
    }, 40);
    recorder.start(200);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    recorder.stop();
    await new Promise((resolve) => (recorder.onstop = resolve));
    clearInterval(timer);
    return [...new Uint8Array(await new Blob(chunks).arrayBuffer())];
  });
  return new Uint8Array(bytes);
}

/** Length of the seek test's video, in seconds. */
const SEEK_VIDEO_SECONDS = 40;

/**
 * A real 40 s WebM (VP8, 320×240 at 5 frames a second, noise so it does not compress: about
 * 13.6 MB, four blocks, the last from about 37 s on) encoded by ffmpeg, with a keyframe every
 * second and its cue index, as a video player needs to seek without reading what lies
 * before the point it seeks to.
 */
async function encodeSeekableWebm(): Promise<Uint8Array> {
  const dir = mkdtempSync(join(tmpdir(), 'nearsync-seek-'));
  try {
    const out = join(dir, 'seek.webm');
    // Not execFileSync: the test's server and its connections need the event loop meanwhile.
    await promisify(execFile)('ffmpeg', [
      '-loglevel', 'error', '-f', 'lavfi', '-i', `testsrc2=size=320x240:rate=5:duration=${SEEK_VIDEO_SECONDS}`,
      '-vf', 'noise=alls=40:allf=t', '-c:v', 'libvpx', '-b:v', '2800k', '-minrate', '2800k', '-maxrate', '2800k',
      '-g', '5', '-deadline', 'realtime', '-cpu-used', '8', '-an', out,
    ]);
    return new Uint8Array(readFileSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('file URLs served by the service worker', () => {
  let harness: E2eHarness;
  let server: TestServer;
  let seeded: SeededWorkspace;
  let page: Page;
  const big = new PseudoRandomFile('file urls', BIG);
  /** Encoded while the page joins (ffmpeg takes a while on a loaded machine). */
  let seekVideo: Promise<Uint8Array>;
  const fileUrl = (path: string) => `/w/${seeded.namespaceId}/file/${path.split('/').map(encodeURIComponent).join('/')}`;

  beforeAll(async () => {
    seekVideo = encodeSeekableWebm();
    // Awaited in its test; a failure here must not go unhandled meanwhile.
    seekVideo.catch(() => undefined);
    harness = await E2eHarness.start();
    server = await harness.startServer({ egressBytesPerSecond: EGRESS });
    seeded = await seedWorkspace(server.origin, 'urls', [
      { path: 'docs/page.html', bytes: new TextEncoder().encode(HOSTILE_HTML) },
      { path: 'docs/pic.svg', bytes: new TextEncoder().encode(HOSTILE_SVG) },
      { path: 'docs/a b ü.txt', bytes: new TextEncoder().encode('plain text, spaces and ü in the name\n') },
    ]);
    await big.commitTo(new ServerApi(server.origin, seeded.token), seeded.namespaceId, 'big.bin');
    page = await (await harness.newBrowser()).newPage();
    await joinWithLink(page, seeded.shareLink(server.origin), seeded.namespaceId);
    // The worker activates and claims this page (clients.claim): no reload needed.
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 20_000 });
  }, 180_000);

  afterAll(async () => {
    await harness?.close();
  }, 60_000);

  it('plays a video that is not synced yet in a <video> element', async () => {
    // Committed while big.bin still syncs: the background order puts the clip behind it.
    await showFileFolder(page, 'big.bin');
    const clip = await recordWebm(page);
    const api = new ServerApi(server.origin, seeded.token);
    const hash = createHash('sha256').update(clip).digest('hex') as BlockHash;
    await api.putBlock(hash, clip);
    await api.commit(seeded.namespaceId as NamespaceId, { path: parseFilePath('clip.webm'), size: clip.length, mtime: Date.now(), blocks: [hash], deleted: false });
    await waitForFileStatus(page, 'clip.webm', 'waiting', 30_000);

    const clipResponse = page.waitForResponse((response: PwResponse) => response.url().endsWith('/file/clip.webm'));
    const played = await page.evaluate(async (url) => {
      const video = document.createElement('video');
      video.muted = true;
      video.src = url;
      document.body.append(video);
      await video.play();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stuck at ${video.currentTime} s`)), 20_000);
        video.ontimeupdate = () => {
          if (video.currentTime > 0.5) {
            clearTimeout(timer);
            resolve();
          }
        };
        video.onerror = () => reject(new Error(`video error ${video.error?.code}: ${video.error?.message}`));
      });
      const time = video.currentTime;
      video.remove();
      return { time, width: video.videoWidth };
    }, fileUrl('clip.webm'));
    expect(played.time).toBeGreaterThan(0.5);
    expect(played.width).toBe(160);
    const response = await clipResponse;
    expect(response.headers()['x-nearsync-synced']).toBe('0');
    expect(response.headers()['content-type']).toBe('video/webm');
  }, 120_000);

  it('answers Range reads of a file not synced yet, byte-exact, fetching their blocks first', async () => {
    await showFileFolder(page, 'big.bin');
    // Two blocks' worth crossing a block boundary, then a piece inside one block.
    const across = { start: MAX_BLOCK_SIZE - 1000, end: MAX_BLOCK_SIZE + 999 };
    const first = await fetchInPage(page, fileUrl('big.bin'), { range: `bytes=${across.start}-${across.end}` });
    expect(first.status).toBe(206);
    expect(first.headers['x-nearsync-synced']).toBe('0');
    expect(first.headers['content-range']).toBe(`bytes ${across.start}-${across.end}/${BIG}`);
    expect(first.headers['content-length']).toBe('2000');
    expect(first.headers['accept-ranges']).toBe('bytes');
    expect(first.headers['content-type']).toBe('application/octet-stream');
    expect(first.headers['content-disposition']).toBe("attachment; filename*=UTF-8''big.bin");
    expectSafeHeaders(first.headers);
    expect(first.sha256).toBe(sliceHash(big, across.start, across.end));

    const inner = { start: 8 * MAX_BLOCK_SIZE + 77, end: 8 * MAX_BLOCK_SIZE + 1_000_076 };
    const second = await fetchInPage(page, fileUrl('big.bin'), { range: `bytes=${inner.start}-${inner.end}` });
    expect(second.status).toBe(206);
    expect(second.sha256).toBe(sliceHash(big, inner.start, inner.end));

    const suffix = await fetchInPage(page, fileUrl('big.bin'), { range: 'bytes=-100' });
    expect(suffix.status).toBe(206);
    expect(suffix.headers['content-range']).toBe(`bytes ${BIG - 100}-${BIG - 1}/${BIG}`);
    expect(suffix.sha256).toBe(sliceHash(big, BIG - 100, BIG - 1));

    const past = await fetchInPage(page, fileUrl('big.bin'), { range: `bytes=${BIG}-` });
    expect(past.status).toBe(416);
    expect(past.headers['content-range']).toBe(`bytes */${BIG}`);
    expect(past.text).toContain('outside big.bin');
  }, 120_000);

  it('serves HTML and SVG as text in a sandbox, so their scripts cannot read this origin’s storage', async () => {
    const context = page.context();
    for (const [path, name] of [
      ['docs/page.html', 'html'],
      ['docs/pic.svg', 'svg'],
    ] as const) {
      const tab = await context.newPage();
      const response = await tab.goto(`${server.origin}${fileUrl(path)}`);
      expect(response?.status()).toBe(200);
      expect(response?.headers()['content-type']).toBe('text/plain;charset=utf-8');
      expectSafeHeaders(response!.headers());
      expect(await tab.evaluate(() => document.contentType)).toBe('text/plain');
      expect(await tab.evaluate(() => document.body.textContent)).toContain('localStorage.setItem');
      // Even script run in that document (here by the test) finds an opaque origin.
      const storage = await tab.evaluate(async () => {
        const local = (() => {
          try {
            return `read ${localStorage.length}`;
          } catch (error) {
            return (error as Error).name;
          }
        })();
        const idb = await new Promise<string>((resolve) => {
          try {
            const open = indexedDB.open(`probe-${Math.random()}`);
            open.onsuccess = () => resolve('opened');
            open.onerror = () => resolve(open.error?.name ?? 'error');
          } catch (error) {
            resolve((error as Error).name);
          }
        });
        return { local, idb, origin: self.origin };
      });
      expect(storage.local).toBe('SecurityError');
      expect(storage.idb).not.toBe('opened');
      expect(storage.origin).toBe('null');
      await tab.close();
      // The app's own origin saw nothing of the files' scripts.
      const marks = await page.evaluate(async () => ({
        keys: Object.keys(localStorage).filter((key) => key.startsWith('pwned')),
        dbs: (await indexedDB.databases()).map((db) => db.name).filter((db) => db?.startsWith('pwned')),
      }));
      expect(marks, name).toEqual({ keys: [], dbs: [] });
    }
    const text = await fetchInPage(page, fileUrl('docs/a b ü.txt'));
    expect(text.status).toBe(200);
    expect(text.text).toBe('plain text, spaces and ü in the name\n');
    expect(text.headers['content-disposition']).toBe(`inline; filename*=UTF-8''${encodeURIComponent('a b ü.txt')}`);
  }, 60_000);

  it('refuses hostile and unknown addresses with a clear status and reason', async () => {
    const cases: Array<[string, number, string]> = [
      [`/w/${seeded.namespaceId}/file/docs%2Fpage.html`, 400, 'encoded separator'],
      [`/w/${seeded.namespaceId}/file/docs/..%2Fbig.bin`, 400, 'encoded separator'],
      [`/w/${seeded.namespaceId}/file/a%00b`, 400, 'NUL'],
      [`/w/${seeded.namespaceId}/file/%E0%A4%A`, 400, 'percent-encoding'],
      [`/w/x/file/big.bin`, 400, 'workspace'],
      [`/w/${'A'.repeat(22)}/file/big.bin`, 404, 'not joined in this browser'],
      [`/w/${seeded.namespaceId}/file/missing.bin`, 404, 'missing.bin is not in this workspace'],
    ];
    for (const [url, status, reason] of cases) {
      const answer = await fetchInPage(page, url);
      expect({ url, status: answer.status }).toEqual({ url, status });
      expect(answer.text).toContain(reason);
      expectSafeHeaders(answer.headers);
    }
    const post = await fetchInPage(page, fileUrl('big.bin'), { method: 'POST' });
    expect(post.status).toBe(405);
  }, 60_000);

  it('on a first visit to a file URL, installs the service worker and lets it answer (here: a browser that has not joined)', async () => {
    const fresh = await (await harness.newBrowser()).newPage();
    const answered = fresh.waitForResponse((response: PwResponse) => response.url().includes('/file/') && response.status() === 404, { timeout: 30_000 });
    await fresh.goto(`${server.origin}${fileUrl('docs/a b ü.txt')}`);
    const response = await answered;
    expectSafeHeaders(response.headers());
    await fresh.waitForFunction(() => document.body?.textContent?.includes('is not joined in this browser'), undefined, { timeout: 30_000 });
    await fresh.close();
  }, 60_000);

  it('answers from stored blocks once the file is synced: full and Range reads', async () => {
    await waitForFileStatus(page, 'big.bin', 'synced', 120_000);
    const whole = await fetchInPage(page, fileUrl('big.bin'));
    expect(whole.status).toBe(200);
    expect(whole.headers['x-nearsync-synced']).toBe('1');
    expect(whole.headers['content-length']).toBe(String(BIG));
    expect(whole.length).toBe(BIG);
    expect(whole.sha256).toBe(big.sha256());
    const range = await fetchInPage(page, fileUrl('big.bin'), { range: 'bytes=12345678-' });
    expect(range.status).toBe(206);
    expect(range.sha256).toBe(sliceHash(big, 12345678, BIG - 1));
    const head = await fetchInPage(page, fileUrl('big.bin'), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(BIG));
  }, 180_000);

  it('seeks a <video> of a larger file not synced yet to near its end and plays from there, reading the tail first', async () => {
    const video = await seekVideo;
    const api = new ServerApi(server.origin, seeded.token);
    // Another file ahead of it in the background order keeps the sync busy elsewhere meanwhile.
    await new PseudoRandomFile('seek filler', 12 * MAX_BLOCK_SIZE).commitTo(api, seeded.namespaceId as NamespaceId, 'filler.bin');
    const blocks = await commitBytes(api, seeded.namespaceId, 'seek.webm', video);
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    await waitForFileStatus(page, 'seek.webm', 'waiting', 30_000);

    // Every block GET of this browser (pages and workers), and the Range of each read of the file URL, in order.
    const gets: BlockHash[] = [];
    const onRequest = (request: PwRequest) => {
      const hash = /\/api\/v1\/blocks\/([0-9a-f]{64})(?:\?|$)/.exec(request.url())?.[1] as BlockHash | undefined;
      if (hash && blocks.includes(hash)) gets.push(hash);
    };
    const ranges: string[] = [];
    const onPageRequest = (request: PwRequest) => {
      if (request.url().endsWith('/file/seek.webm')) ranges.push(request.headers().range ?? '(whole file)');
    };
    page.context().on('request', onRequest);
    page.on('request', onPageRequest);
    // In the last block (from about 37 s).
    const seekTo = SEEK_VIDEO_SECONDS - 2;
    const played = await page.evaluate(
      async ({ url, seekTo }) => {
        const video = document.createElement('video');
        video.muted = true;
        video.preload = 'metadata';
        video.src = url;
        document.body.append(video);
        const failed = new Promise<never>((_, reject) => (video.onerror = () => reject(new Error(`video error ${video.error?.code}: ${video.error?.message}`))));
        await Promise.race([new Promise((resolve) => (video.onloadedmetadata = resolve)), failed]);
        const seeked = new Promise<boolean>((resolve) => video.addEventListener('seeked', () => resolve(true), { once: true }));
        video.currentTime = seekTo;
        const didSeek = await Promise.race([seeked, failed]);
        await video.play();
        // Played on from the seek point.
        await Promise.race([
          new Promise<void>((resolve) => {
            video.ontimeupdate = () => {
              if (video.currentTime > seekTo + 0.5) resolve();
            };
          }),
          failed,
        ]);
        const time = video.currentTime;
        const { duration } = video;
        video.remove();
        return { didSeek, time, duration };
      },
      { url: fileUrl('seek.webm'), seekTo },
    );
    page.context().off('request', onRequest);
    page.off('request', onPageRequest);

    expect(played.didSeek).toBe(true);
    expect(played.duration).toBeCloseTo(SEEK_VIDEO_SECONDS, 0);
    expect(played.time).toBeGreaterThan(seekTo + 0.5);
    // The player read the tail by Range: a request starting in the last block.
    const lastBlockStart = (blocks.length - 1) * MAX_BLOCK_SIZE;
    const starts = ranges.map((range) => Number(/^bytes=(\d+)-/.exec(range)?.[1] ?? -1));
    expect(starts.some((start) => start >= lastBlockStart), ranges.join(', ')).toBe(true);
    // The last block was fetched before the one ahead of it: the file was not read up to the
    // seek point first (the first block's read may fetch the next one ahead; that is all).
    const order = `block order ${gets.map((hash) => blocks.indexOf(hash)).join(',')}`;
    const lastAt = gets.indexOf(blocks[blocks.length - 1]);
    expect(lastAt, order).toBeGreaterThanOrEqual(0);
    const beforeLast = gets.indexOf(blocks[blocks.length - 2]);
    expect(beforeLast === -1 || beforeLast > lastAt, order).toBe(true);
  }, 180_000);

  it('with no page of the app open, the service worker reads from the server itself (blocks checked, not stored)', async () => {
    const context = page.context();
    const served = (await server.metrics()).blockBytesServed;
    await page.close();
    const tab = await context.newPage();
    const range = { start: 3 * MAX_BLOCK_SIZE - 10, end: 3 * MAX_BLOCK_SIZE + 9 };
    // A page of the origin that is not the app (the service worker controls it, no sync worker runs there).
    await tab.goto(`${server.origin}/api/v1/health`);
    const answer = await tab.evaluate(
      async ({ url, range }) => {
        const response = await fetch(url, { headers: { Range: range } });
        return { status: response.status, bytes: [...new Uint8Array(await response.arrayBuffer())], synced: response.headers.get('x-nearsync-synced') };
      },
      { url: fileUrl('big.bin'), range: `bytes=${range.start}-${range.end}` },
    );
    expect(answer.status).toBe(206);
    expect(createHash('sha256').update(Uint8Array.from(answer.bytes)).digest('hex')).toBe(sliceHash(big, range.start, range.end));
    expect(answer.synced).toBe('0');
    // Two blocks crossed, both from the server (the page that held them is gone).
    expect((await server.metrics()).blockBytesServed - served).toBeGreaterThanOrEqual(2 * MAX_BLOCK_SIZE);
  }, 60_000);
});
