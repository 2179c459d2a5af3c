import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from './harness.ts';

/**
 * Reads of a picked File's slices (`readBodyInto`, `blobBlocks` through `cutBlocks`, as an
 * upload and its local keep do) must finish while the garbage collector runs. A pending read
 * of a Blob's stream is no GC root of its own in Chromium: without `held-while-pending.ts`
 * a collection during the read freed it and the read never settled (the upload stall of the
 * keep-after-upload change). Here the page collects garbage every few milliseconds, so a
 * read that can be lost is lost: the test then fails on its timeout.
 */

const MiB = 1024 * 1024;
const BLOCK = 4 * MiB;
let browser: Browser;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nearsync-blob-gc-'));
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: [...CHROMIUM_ARGS, '--js-flags=--expose-gc'] });
});

afterAll(async () => {
  await browser?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function engineBundle(): Promise<string> {
  const engine = resolve(import.meta.dirname, '../../src/engine');
  const result = await build({
    stdin: {
      contents: `export { readBodyInto, BlockBufferPool } from './block-buffers.ts'; export { blobBlocks, cutBlocks } from './chunker.ts';`,
      resolveDir: engine,
      loader: 'ts',
    },
    bundle: true,
    write: false,
    format: 'iife',
    globalName: 'engine',
    target: 'es2022',
  });
  return result.outputFiles[0].text;
}

test('slices of a picked File are read whole while the garbage collector runs', { timeout: 120_000 }, async () => {
  const bytes = randomBytes(6 * BLOCK + 12_345);
  const path = join(dir, 'picked.bin');
  await writeFile(path, bytes);
  const expected: number[] = [];
  for (let offset = 0; offset < bytes.length; offset += BLOCK) expected.push(checksum(bytes.subarray(offset, offset + BLOCK)));

  const page = await browser.newPage();
  await page.setContent('<input type="file" id="picked">');
  await page.addScriptTag({ content: await engineBundle() });
  await page.setInputFiles('#picked', path);

  const result = await page.evaluate(
    async ({ block, rounds }) => {
      type Engine = {
        readBodyInto(body: ReadableStream<Uint8Array>, length: number, pool: unknown): Promise<Uint8Array>;
        BlockBufferPool: new (size: number, keep: number) => unknown;
        blobBlocks(blob: Blob, blockSize: number): ReadableStream<Uint8Array>;
        cutBlocks(stream: ReadableStream<Uint8Array>, blockSize: number): AsyncGenerator<Uint8Array>;
      };
      const engine = (globalThis as unknown as { engine: Engine }).engine;
      const file = (document.getElementById('picked') as HTMLInputElement).files![0];
      // The same sum as checksum() below (about:blank has no crypto.subtle: not a secure context).
      const sum = (data: Uint8Array) => {
        let value = data.length;
        for (let i = 0; i < data.length; i++) value = (Math.imul(value, 31) + data[i]) >>> 0;
        return value;
      };
      const blocks = Math.ceil(file.size / block);
      const collector = setInterval(() => (globalThis as unknown as { gc: () => void }).gc(), 3);
      try {
        // Four lanes of single-slice reads into buffers of their own, as the keep does.
        const sliceSums: number[][] = [];
        await Promise.all(
          Array.from({ length: 4 }, async (_, lane) => {
            for (let round = 0; round < rounds; round++) {
              const index = (round * 4 + lane) % blocks;
              const offset = index * block;
              const length = Math.min(block, file.size - offset);
              const read = await engine.readBodyInto(file.slice(offset, offset + length).stream(), length, new engine.BlockBufferPool(block, 0));
              (sliceSums[index] ??= []).push(sum(read));
            }
          }),
        );
        // Two whole passes as an upload reads: blobBlocks cut into blocks, and File.stream() cut into blocks.
        const passes: number[][] = [];
        for (const stream of [engine.blobBlocks(file, block), file.stream()]) {
          const sums: number[] = [];
          for await (const part of engine.cutBlocks(stream, block)) sums.push(sum(part));
          passes.push(sums);
        }
        return { sliceSums, passes };
      } finally {
        clearInterval(collector);
      }
    },
    { block: BLOCK, rounds: 12 },
  );

  expect(result.passes).toEqual([expected, expected]);
  expect(result.sliceSums.length).toBe(expected.length);
  result.sliceSums.forEach((sums, index) => {
    expect(sums.length).toBeGreaterThan(0);
    for (const sum of sums) expect(sum).toBe(expected[index]);
  });
});

/** A 32-bit sum of the bytes (what the page computes too). */
function checksum(data: Uint8Array): number {
  let value = data.length;
  for (let i = 0; i < data.length; i++) value = (Math.imul(value, 31) + data[i]) >>> 0;
  return value;
}
