import { randomBytes } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32, crc32Update } from '../../src/engine/zip/crc32.ts';

/** The zip checksum against zlib's, over the shapes the word-at-a-time path has to get right. */
describe('crc32', () => {
  it('matches zlib for every length up to 200 and every start offset within a word', () => {
    const bytes = randomBytes(256 + 8);
    for (let offset = 0; offset < 8; offset++) {
      for (let length = 0; length <= 200; length++) {
        const view = new Uint8Array(bytes.buffer, bytes.byteOffset + offset, length);
        expect(crc32(view)).toBe(zlibCrc32(view));
      }
    }
  });

  it('matches zlib on a whole 4 MiB block and on unaligned views of it', () => {
    const block = new Uint8Array(randomBytes(4 * 1024 * 1024));
    expect(crc32(block)).toBe(zlibCrc32(block));
    expect(crc32(block.subarray(3, block.length - 5))).toBe(zlibCrc32(block.subarray(3, block.length - 5)));
  });

  it('runs across pieces of any alignment: crc32Update over the pieces is the CRC of the whole', () => {
    const whole = new Uint8Array(randomBytes(100_003));
    let crc = 0;
    for (let at = 0, step = 1; at < whole.length; at += step, step = (step * 7 + 3) % 9_001) crc = crc32Update(crc, whole.subarray(at, Math.min(whole.length, at + step)));
    expect(crc).toBe(zlibCrc32(whole));
    expect(crc32(new Uint8Array(0))).toBe(0);
  });
});
