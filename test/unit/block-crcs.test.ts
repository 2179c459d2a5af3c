import { describe, expect, it } from 'vitest';
import { parseBlockCrc } from '../../workers/block-crcs.ts';

/** A stored CRC record is local data from any version of this code: only a well-formed one is used. */
describe('parseBlockCrc', () => {
  it('takes a 32-bit unsigned CRC and a block length', () => {
    expect(parseBlockCrc({ crc32: 0, size: 1 })).toEqual({ crc32: 0, size: 1 });
    expect(parseBlockCrc({ crc32: 0xffffffff, size: 4 * 1024 * 1024, extra: 'ignored' })).toEqual({ crc32: 0xffffffff, size: 4 * 1024 * 1024 });
  });

  it('refuses anything else', () => {
    for (const value of [
      null,
      undefined,
      'crc',
      42,
      {},
      { crc32: -1, size: 10 },
      { crc32: 2 ** 32, size: 10 },
      { crc32: 1.5, size: 10 },
      { crc32: '12', size: 10 },
      { crc32: 1, size: 0 },
      { crc32: 1, size: 4 * 1024 * 1024 + 1 },
      { crc32: 1, size: Number.NaN },
    ]) {
      expect(parseBlockCrc(value), JSON.stringify(value)).toBeUndefined();
    }
  });
});
