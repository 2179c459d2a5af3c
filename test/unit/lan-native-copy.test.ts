import { describe, expect, it } from 'vitest';
import { copyNatively } from '../../src/lan/tcp/socket-channel.ts';

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 255;
  return bytes;
}

describe('copyNatively (DATA payloads into pooled block buffers)', () => {
  it('writes exactly the source bytes at the offset of a view into shared memory, at any alignment and size', () => {
    for (const viewStart of [0, 1, 3, 8]) {
      for (const [sourceStart, length, offset] of [
        [0, 5, 0],
        [3, 1023, 7],
        [1, 1024, 13],
        [5, 70_001, 1],
        [2, 262_134, 262_145],
      ]) {
        const target = new Uint8Array(new SharedArrayBuffer(600_000), viewStart, 590_000);
        const expected = new Uint8Array(590_000);
        const source = pattern(sourceStart + length + 9, length).subarray(sourceStart, sourceStart + length);
        copyNatively(target, source, offset);
        expected.set(source, offset);
        expect(Buffer.from(target).equals(Buffer.from(expected))).toBe(true);
        // Nothing outside the view was touched.
        expect(new Uint8Array(target.buffer, 0, viewStart).every((byte) => byte === 0)).toBe(true);
      }
    }
  });

  it('refuses a copy that would run past the end of the view', () => {
    const target = new Uint8Array(new SharedArrayBuffer(8192), 0, 4096);
    expect(() => copyNatively(target, new Uint8Array(2048), 3000)).toThrow(RangeError);
    expect(() => copyNatively(target, new Uint8Array(16), 4090)).toThrow(RangeError);
    expect(new Uint8Array(target.buffer).every((byte) => byte === 0)).toBe(true);
  });
});
