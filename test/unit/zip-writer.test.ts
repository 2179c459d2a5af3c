import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32, crc32Update } from '../../src/engine/zip/crc32.ts';
import { coalesce, gatherIntoWrites } from '../../src/engine/zip/coalesce.ts';
import { zipArchive, type ZipEntry } from '../../src/engine/zip/zip-writer.ts';

/**
 * The zip writer's archives checked by Debian's Info-ZIP `unzip`/`zipinfo` (never by this
 * writer's own code): contents byte-exact, CRCs, names, times, and the zip64 boundaries
 * (more than 65,535 entries; a file of 4 GiB and more; an entry starting past 4 GiB).
 */

const run = promisify(execFile);
const MiB = 1024 * 1024;
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nearsync-zip-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * Writes the archive to `name`; chunks that are `hole` itself are skipped (a sparse file), so a
 * 4 GiB entry of zeros costs no disk.
 */
async function writeArchive(name: string, entries: Iterable<ZipEntry>, hole?: Uint8Array): Promise<string> {
  const path = join(dir, name);
  const file = await open(path, 'w');
  let position = 0;
  try {
    for await (const piece of zipArchive(entries)) {
      const chunk = piece instanceof Uint8Array ? piece : new Uint8Array(await piece.arrayBuffer());
      if (chunk !== hole) await file.write(chunk, 0, chunk.length, position);
      position += chunk.length;
    }
    await file.truncate(position);
  } finally {
    await file.close();
  }
  return path;
}

function file(name: string, bytes: Uint8Array, mtime = Date.UTC(2024, 4, 17, 10, 30, 12), pieces = 1): ZipEntry {
  return {
    name,
    size: bytes.length,
    mtime,
    async *data() {
      const step = Math.ceil(bytes.length / pieces) || 1;
      for (let at = 0; at < bytes.length; at += step) yield bytes.subarray(at, at + step);
    },
  };
}

async function unzipped(archive: string, name: string): Promise<Buffer> {
  // -p: to stdout; names are matched as wildcards, so escape the wildcard characters.
  const { stdout } = await run('unzip', ['-p', archive, name.replace(/[[\]*?\\]/g, '\\$&')], { encoding: 'buffer', maxBuffer: 64 * MiB });
  return stdout;
}

describe('crc32', () => {
  it('gives the standard check value and the same result fed in pieces', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    const bytes = randomBytes(100_003);
    expect(crc32Update(crc32Update(0, bytes.subarray(0, 7)), bytes.subarray(7))).toBe(crc32(bytes));
  });
});

describe('zipArchive', () => {
  it('writes stored entries that unzip tests and extracts byte-exact, with UTF-8 names and times', async () => {
    const contents: Record<string, Uint8Array> = {
      'top.txt': new TextEncoder().encode('hello\n'),
      'empty.bin': new Uint8Array(0),
      'Ordner/Über straße ✓.txt': new TextEncoder().encode('unicode\n'),
      'docs/deep/日本語/ファイル.md': randomBytes(70_000),
      'docs/multi.bin': randomBytes(3 * MiB + 17),
    };
    const mtime = Date.UTC(2023, 0, 2, 3, 4, 6);
    const entries: ZipEntry[] = [
      { name: 'docs', mtime, folder: true },
      ...Object.entries(contents).map(([name, bytes]) => file(name, bytes, mtime, 5)),
    ];
    const archive = await writeArchive('plain.zip', entries);
    const test = await run('unzip', ['-t', archive]);
    expect(test.stdout).toContain('No errors detected');
    for (const [name, bytes] of Object.entries(contents)) expect(Buffer.compare(await unzipped(archive, name), bytes)).toBe(0);
    // -T: times as UTC 'yyyymmdd.hhmmss' from the extended timestamp field.
    const { stdout: listing } = await run('zipinfo', ['-T', archive], { env: { ...process.env, TZ: 'UTC' } });
    expect(listing).toContain('20230102.030406 Ordner/Über straße ✓.txt');
    expect(listing).toMatch(/^drwxr-xr-x .* docs\/$/m);
    expect(listing).toContain('6 files');
  });

  it('combines the known CRCs of pieces (Blobs and bytes) with checksummed bytes and puts the Blobs out unread', async () => {
    const bytes = randomBytes(200_000);
    const pieces: ZipEntry = {
      name: 'pieces.bin',
      size: bytes.length,
      mtime: 0,
      async *data() {
        yield { data: new Blob([bytes.subarray(0, 150_000)]), crc32: crc32(bytes.subarray(0, 150_000)) };
        yield bytes.subarray(150_000, 160_000);
        yield { data: new Blob([]), crc32: 0 };
        yield { data: bytes.subarray(160_000), crc32: crc32(bytes.subarray(160_000)) };
      },
    };
    const out: (Uint8Array | Blob)[] = [];
    for await (const piece of zipArchive([pieces])) out.push(piece);
    expect(out.filter((piece) => piece instanceof Blob)).toHaveLength(1);
    const archive = await writeArchive('pieces.zip', [pieces]);
    expect((await run('unzip', ['-t', archive])).stdout).toContain('No errors detected');
    expect(Buffer.compare(await unzipped(archive, 'pieces.bin'), bytes)).toBe(0);
  });

  it('writes the CRC it is given: a wrong one makes unzip -t report the entry bad', async () => {
    const bytes = randomBytes(1000);
    const wrong: ZipEntry = { name: 'wrong.bin', size: bytes.length, mtime: 0, async *data() { yield { data: new Blob([bytes]), crc32: crc32(bytes) ^ 1 }; } };
    const archive = await writeArchive('wrong.zip', [wrong]);
    await expect(run('unzip', ['-t', archive])).rejects.toMatchObject({ stdout: expect.stringMatching(/wrong\.bin\s+bad CRC/) });
  });

  it('refuses a file that yields other than its size', async () => {
    const short: ZipEntry = { name: 'short', size: 10, mtime: 0, async *data() { yield new Uint8Array(9); } };
    await expect(writeArchive('short.zip', [short])).rejects.toThrow('short: has 9 bytes, 10 expected');
  });

  it('writes zip64 end records for more than 65,535 entries', async () => {
    const count = 70_000;
    const entries = (function* () {
      for (let i = 0; i < count; i++) yield file(`many/${i}.txt`, i % 1000 === 0 ? new TextEncoder().encode(`file ${i}`) : new Uint8Array(0));
    })();
    const archive = await writeArchive('many.zip', entries);
    const test = await run('unzip', ['-t', archive], { maxBuffer: 64 * MiB });
    expect(test.stdout).toContain('No errors detected');
    const { stdout } = await run('zipinfo', ['-h', archive]);
    expect(stdout).toContain(`number of entries: ${count}`);
    expect((await unzipped(archive, 'many/69000.txt')).toString()).toBe('file 69000');
  });

  it('writes zip64 sizes for a file over 4 GiB and zip64 offsets for an entry past 4 GiB', async () => {
    const zeros = new Uint8Array(4 * MiB);
    const bigSize = 4 * 1024 * MiB + 3 * MiB; // not a multiple of the chunk: the last one is partial
    const big: ZipEntry = {
      name: 'video/big.bin',
      size: bigSize,
      mtime: Date.UTC(2022, 5, 1),
      async *data() {
        let left = bigSize;
        while (left >= zeros.length) {
          yield zeros;
          left -= zeros.length;
        }
        yield new Uint8Array(left);
      },
    };
    const after = randomBytes(1000);
    const archive = await writeArchive('big.zip', [big, file('after.bin', after)], zeros);
    // -t reads and checks the CRC of all 4 GiB of the first entry as well.
    const test = await run('unzip', ['-t', archive]);
    expect(test.stdout).toContain('No errors detected');
    expect(Buffer.compare(await unzipped(archive, 'after.bin'), after)).toBe(0);
    const { stdout } = await run('zipinfo', ['-l', archive]);
    expect(stdout).toMatch(new RegExp(`${bigSize}\\s.*video/big\\.bin`));
  }, 300_000);
});

describe('coalesce', () => {
  it('gathers small chunks and passes large ones through unchanged, keeping the order', async () => {
    const large = new Uint8Array(100).fill(7);
    async function* source() {
      yield Uint8Array.of(1, 2);
      yield Uint8Array.of(3);
      yield large;
      yield Uint8Array.of(4, 5, 6);
      yield Uint8Array.of(7, 8, 9);
    }
    const out: Uint8Array[] = [];
    for await (const chunk of coalesce(source(), 4)) out.push(chunk);
    expect(out.map((chunk) => [...chunk])).toEqual([[1, 2, 3], [...large], [4, 5, 6], [7, 8, 9]]);
    expect(out[1]).toBe(large);
  });
});

describe('gatherIntoWrites', () => {
  const contents = async (chunk: Blob | Uint8Array) => (chunk instanceof Blob ? { blob: [...new Uint8Array(await chunk.arrayBuffer())] } : { bytes: [...chunk] });

  it('composes Blobs with the short runs of bytes between them into Blobs of at least the size asked', async () => {
    async function* source() {
      yield Uint8Array.of(1, 2);
      yield new Blob([Uint8Array.of(3, 4, 5)]);
      yield Uint8Array.of(6);
      yield new Blob([Uint8Array.of(7, 8, 9, 10, 11)]);
      yield Uint8Array.of(12);
    }
    const out = [];
    for await (const chunk of gatherIntoWrites(source(), 5, 1024)) out.push(await contents(chunk));
    expect(out).toEqual([{ blob: [1, 2, 3, 4, 5] }, { blob: [6, 7, 8, 9, 10, 11] }, { bytes: [12] }]);
  });

  it('writes runs of bytes as bytes, at most the held size at a time, never wrapped in a Blob', async () => {
    const small = (from: number) => Uint8Array.of(from, from + 1);
    async function* source() {
      yield new Blob([Uint8Array.of(0)]);
      // A run of small files' content: 6 bytes here, 300 KiB below.
      yield small(1);
      yield small(3);
      yield small(5);
      yield new Uint8Array(300 * 1024);
      yield new Blob([Uint8Array.of(9)]);
    }
    const out: (Blob | Uint8Array)[] = [];
    for await (const chunk of gatherIntoWrites(source(), 1024 * 1024, 200 * 1024)) out.push(chunk);
    expect(out.map((chunk) => (chunk instanceof Blob ? `blob ${chunk.size}` : `bytes ${chunk.length}`))).toEqual(['blob 1', `bytes ${6 + 300 * 1024}`, 'blob 1']);
    expect([...(out[1] as Uint8Array).subarray(0, 7)]).toEqual([1, 2, 3, 4, 5, 6, 0]);
  });

  it('puts out only bytes for an archive of small files', async () => {
    async function* source() {
      for (let i = 0; i < 10; i++) yield new Uint8Array(100).fill(i);
    }
    const out: (Blob | Uint8Array)[] = [];
    for await (const chunk of gatherIntoWrites(source(), 1024, 250)) out.push(chunk);
    expect(out.every((chunk) => chunk instanceof Uint8Array)).toBe(true);
    expect(out.map((chunk) => (chunk as Uint8Array).length)).toEqual([300, 300, 300, 100]);
    expect(Buffer.concat(out as Uint8Array[])).toEqual(Buffer.concat(Array.from({ length: 10 }, (_, i) => new Uint8Array(100).fill(i))));
  });
});
