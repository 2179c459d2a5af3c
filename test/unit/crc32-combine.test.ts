import { randomBytes, randomInt } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32 } from '../../src/engine/zip/crc32.ts';
import { crc32Combine } from '../../src/engine/zip/crc32-combine.ts';

/**
 * crc32Combine against a direct CRC of the concatenation (ours, and Node's zlib as a second
 * opinion), over random lengths including 0, and over lengths past 2^32 by building the CRC
 * of a long run of zeros two ways.
 */

describe('crc32Combine', () => {
  it('gives the CRC of a ++ b for random lengths, 0 included', () => {
    const lengths = [0, 1, 2, 3, 7, 8, 9, 255, 256, 4096, 65_537, 4 * 1024 * 1024];
    for (let i = 0; i < 30; i++) lengths.push(randomInt(0, 300_000));
    for (const lengthA of lengths.slice(0, 12)) {
      for (const lengthB of lengths) {
        const a = randomBytes(lengthA);
        const b = randomBytes(lengthB);
        const whole = Buffer.concat([a, b]);
        const combined = crc32Combine(crc32(a), crc32(b), b.length);
        expect(combined, `${lengthA} + ${lengthB}`).toBe(crc32(whole));
        expect(combined).toBe(zlibCrc32(whole));
      }
    }
  });

  it('folds many pieces of a file into its CRC, as a zip entry of many blocks does', () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    let crc = 0;
    let at = 0;
    while (at < bytes.length) {
      const piece = bytes.subarray(at, at + randomInt(0, 200_000));
      crc = crc32Combine(crc, crc32(piece), piece.length);
      at += piece.length;
    }
    expect(crc).toBe(crc32(bytes));
  });

  it('handles lengths past 2^32 the same as the sum of smaller ones', () => {
    // zeros(n): the CRC of n zero bytes, by doubling from one.
    const zeros = new Map<number, number>([[1, crc32(new Uint8Array(1))]]);
    for (let n = 1; n < 2 ** 33; n *= 2) zeros.set(2 * n, crc32Combine(zeros.get(n)!, zeros.get(n)!, n));
    expect(zeros.get(1024)).toBe(crc32(new Uint8Array(1024)));
    const start = crc32(randomBytes(1000));
    const long = 2 ** 32 + 3;
    const zerosLong = crc32Combine(crc32Combine(zeros.get(2 ** 32)!, zeros.get(2)!, 2), zeros.get(1)!, 1);
    const direct = crc32Combine(start, zerosLong, long);
    const stepwise = crc32Combine(crc32Combine(crc32Combine(start, zeros.get(2 ** 31)!, 2 ** 31), zeros.get(2 ** 31)!, 2 ** 31), crc32(new Uint8Array(3)), 3);
    expect(direct).toBe(stepwise);
  });

  it('refuses a length that is not a byte count', () => {
    expect(() => crc32Combine(0, 0, -1)).toThrow(/not a byte count/);
    expect(() => crc32Combine(0, 0, 1.5)).toThrow(/not a byte count/);
  });
});
