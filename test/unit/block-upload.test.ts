import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  BLOCK_RECORD_ABSENT,
  BlockBatchTooLargeError,
  BlockUploadReader,
  MAX_BLOCK_SIZE,
  ValidationError,
  encodeBlockUploadParts,
  parseBlockUploadBatch,
  parseBlockUploadBatchResponse,
  type BlockHash,
} from '../../src/protocol/index.ts';

const hashOf = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex') as BlockHash;
const block = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 255);

function record(hash: string, bytes: Uint8Array | null, length = bytes?.length ?? BLOCK_RECORD_ABSENT): Uint8Array {
  const header = new Uint8Array(36);
  header.set(Buffer.from(hash, 'hex'));
  new DataView(header.buffer).setUint32(32, length);
  return Buffer.concat([header, bytes ?? new Uint8Array(0)]);
}

const a = block(1000, 1);
const b = block(70_000, 2);
const c = block(5, 3);
const [ha, hb, hc] = [a, b, c].map(hashOf);

/** The ValidationError `fn` throws: its field and message. */
function refusal(fn: () => unknown): { field: string; message: string; tooLarge: boolean } {
  try {
    fn();
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error;
    return { field: error.field, message: error.message, tooLarge: error instanceof BlockBatchTooLargeError };
  }
  throw new Error('expected a ValidationError');
}

describe('batch upload body', () => {
  it('encodes as the records of the batch download, and parses back', () => {
    const body = Buffer.concat(encodeBlockUploadParts([{ hash: ha, bytes: a }, { hash: hb, bytes: b }]));
    expect(body).toEqual(Buffer.concat([record(ha, a), record(hb, b)]));
    expect(parseBlockUploadBatch(body).map((r) => [r.hash, hashOf(r.bytes)])).toEqual([
      [ha, ha],
      [hb, hb],
    ]);
  });

  it('reads records split at every possible byte boundary', () => {
    const stream = Buffer.concat([record(ha, a), record(hb, b), record(hc, c)]);
    for (const size of [1, 7, 35, 36, 37, 1036, stream.length]) {
      const reader = new BlockUploadReader();
      const got = [];
      for (let i = 0; i < stream.length; i += size) got.push(...reader.push(stream.subarray(i, i + size)));
      expect(reader.end()).toBe(3);
      expect(got.map((r) => [r.hash, hashOf(r.bytes)])).toEqual([
        [ha, ha],
        [hb, hb],
        [hc, hc],
      ]);
    }
  });

  it.each([
    ['an empty body', () => new Uint8Array(0), 'blocks', 'at least one'],
    ['a body cut inside a header', () => Buffer.concat([record(ha, a), record(hb, b).subarray(0, 10)]), 'blocks[1]', '10 of 36'],
    ['a body cut inside the bytes', () => Buffer.concat([record(ha, a), record(hb, b).subarray(0, 36 + 500)]), 'blocks[1]', '500 of'],
    ['a zero length', () => record(ha, null, 0), 'blocks[0].length', '1 to'],
    ['the absent marker', () => Buffer.concat([record(ha, a), record(hb, null)]), 'blocks[1].length', 'absent'],
    ['a length past 4 MiB', () => record(ha, null, MAX_BLOCK_SIZE + 1), 'blocks[0].length', String(MAX_BLOCK_SIZE)],
    ['a repeated hash', () => Buffer.concat([record(ha, a), record(hb, b), record(ha, a)]), 'blocks[2]', 'repeats blocks[0]'],
  ])('refuses %s, naming the record', (_what, body, field, words) => {
    const refused = refusal(() => parseBlockUploadBatch(body()));
    expect(refused.field).toBe(field);
    expect(refused.message).toContain(words);
    expect(refused.tooLarge).toBe(false);
  });

  it('refuses the record past the count limit, and the one that takes the bytes past the byte limit (as too large)', () => {
    const three = Buffer.concat([record(ha, a), record(hb, b), record(hc, c)]);
    expect(refusal(() => new BlockUploadReader(2).push(three))).toMatchObject({ field: 'blocks[2]', tooLarge: false });
    expect(new BlockUploadReader(3, 71_005).push(three).length).toBe(3);
    expect(refusal(() => new BlockUploadReader(3, 71_004).push(three))).toMatchObject({ field: 'blocks[2]', tooLarge: true });
  });

  it('refuses a bad record as soon as its header arrives, before its bytes', () => {
    const reader = new BlockUploadReader();
    reader.push(record(ha, a));
    expect(refusal(() => reader.push(record(ha, null, 1000)))).toMatchObject({ field: 'blocks[1]' });
  });

  it('checks the answer: two whole counts adding up to the blocks sent', () => {
    expect(parseBlockUploadBatchResponse({ created: 2, existing: 1 }, 3)).toEqual({ created: 2, existing: 1 });
    expect(() => parseBlockUploadBatchResponse({ created: 2, existing: 2 }, 3)).toThrow(ValidationError);
    expect(() => parseBlockUploadBatchResponse({ created: -1, existing: 4 }, 3)).toThrow(ValidationError);
    expect(() => parseBlockUploadBatchResponse({ created: 1.5, existing: 1.5 }, 3)).toThrow(ValidationError);
    expect(() => parseBlockUploadBatchResponse([], 0)).toThrow(ValidationError);
  });
});
