import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ServerApi } from '../../src/engine/server-api.ts';
import {
  BLOCK_RECORD_ABSENT,
  BlockRecordReader,
  MAX_BLOCK_SIZE,
  ValidationError,
  encodeBlockRecordHeader,
  parseBlockBatchRequest,
  parseCommitBatchRequest,
  parseCommitBatchResponse,
  type BlockHash,
  type NamespaceId,
} from '../../src/protocol/index.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const hashOf = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex') as BlockHash;
const block = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 255);

function record(hash: BlockHash, bytes: Uint8Array | null, length = bytes?.length ?? null): Uint8Array {
  const header = new Uint8Array(36);
  header.set(Buffer.from(hash, 'hex'));
  new DataView(header.buffer).setUint32(32, length ?? BLOCK_RECORD_ABSENT);
  return Buffer.concat([header, bytes ?? new Uint8Array(0)]);
}

const a = block(1000, 1);
const b = block(70_000, 2);
const c = block(5, 3);
const [ha, hb, hc] = [a, b, c].map(hashOf);

describe('block record stream', () => {
  it('encodes headers as hash, then the length big-endian, or 0xFFFFFFFF when absent', () => {
    expect(Buffer.from(encodeBlockRecordHeader(ha, 1000))).toEqual(Buffer.from(record(ha, null, 1000)));
    expect(Buffer.from(encodeBlockRecordHeader(hb, null)).subarray(32).toString('hex')).toBe('ffffffff');
    expect(() => encodeBlockRecordHeader(ha, 0)).toThrow(RangeError);
    expect(() => encodeBlockRecordHeader(ha, MAX_BLOCK_SIZE + 1)).toThrow(RangeError);
  });

  it('reads records split at every possible byte boundary', () => {
    const stream = Buffer.concat([record(ha, a), record(hb, null), record(hc, c)]);
    for (const size of [1, 7, 35, 36, 37, 1036, stream.length]) {
      const reader = new BlockRecordReader([ha, hb, hc]);
      const got = [];
      for (let i = 0; i < stream.length; i += size) got.push(...reader.push(stream.subarray(i, i + size)));
      expect(reader.end()).toBe(3);
      expect(got.map((r) => [r.hash, r.bytes && hashOf(r.bytes)])).toEqual([
        [ha, ha],
        [hb, null],
        [hc, hc],
      ]);
    }
  });

  it('accepts a stream cut after any whole record (the rest is simply absent)', () => {
    const reader = new BlockRecordReader([ha, hb, hc]);
    expect(reader.push(record(ha, a)).length).toBe(1);
    expect(reader.end()).toBe(1);
  });

  it.each([
    ['a hash not asked for', () => record(hashOf(block(9, 9)), c), /not asked/],
    ['a record out of order', () => record(hb, b), /out of request order/],
    ['a repeated record', () => Buffer.concat([record(ha, a), record(ha, a)]), /out of request order/],
    ['a length of 0', () => record(ha, new Uint8Array(0), 0), /length/],
    ['a length over 4 MiB', () => record(ha, null, MAX_BLOCK_SIZE + 1), /length/],
    ['a record past the hashes asked', () => Buffer.concat([record(ha, a), record(hb, b), record(hc, c), record(ha, a)]), /past the hashes/],
  ])('refuses %s', (_what, bytes, message) => {
    const reader = new BlockRecordReader([ha, hb, hc]);
    expect(() => reader.push(bytes())).toThrow(message);
  });

  it('refuses a stream that ends inside a header or a body, and block bytes past the budget', () => {
    for (const cut of [10, 36 + 500]) {
      const reader = new BlockRecordReader([ha]);
      reader.push(record(ha, a).subarray(0, cut));
      expect(() => reader.end()).toThrow(/ended inside a record/);
    }
    const small = new BlockRecordReader([ha, hb], 50_000);
    expect(() => small.push(Buffer.concat([record(ha, a), record(hb, null, 70_000)]))).toThrow(/past 50000 block bytes/);
  });
});

describe('batch bodies', () => {
  const good = { path: 'a', size: 0, mtime: 0, blocks: [] };
  it('parses batch commits and names the failing element', () => {
    expect(parseCommitBatchRequest({ commits: [good] }).commits).toEqual([{ ...good, deleted: false }]);
    const field = (value: unknown) => {
      try {
        parseCommitBatchRequest(value);
      } catch (error) {
        return (error as ValidationError).field;
      }
      return null;
    };
    expect(field({ commits: [good, { ...good, mtime: -1 }] })).toBe('commits[1].mtime');
    expect(field({ commits: [] })).toBe('commits');
    expect(field({ commits: Array(1001).fill(good) })).toBe('commits');
    expect(field({ commits: [good], extra: 1 })).toBe('body.extra');
  });
  it('parses batch downloads, refusing repeats', () => {
    expect(parseBlockBatchRequest({ hashes: [ha, hb] }).hashes).toEqual([ha, hb]);
    expect(() => parseBlockBatchRequest({ hashes: [ha, hb, ha] })).toThrow('hashes[2]: repeats hashes[0]');
    expect(() => parseBlockBatchRequest({ hashes: [] })).toThrow(ValidationError);
  });
  it('checks a batch commit answer: one consecutive sjid per commit', () => {
    expect(parseCommitBatchResponse({ sjids: [4, 5, 6] }, 3)).toEqual({ sjids: [4, 5, 6] });
    expect(() => parseCommitBatchResponse({ sjids: [4, 6, 7] }, 3)).toThrow('sjids[1]');
    expect(() => parseCommitBatchResponse({ sjids: [4, 5] }, 3)).toThrow('sjids');
    expect(() => parseCommitBatchResponse({ sjids: [4, 5, 6, 7] }, 3)).toThrow('sjids');
    expect(() => parseCommitBatchResponse({ sjids: [0] }, 1)).toThrow('sjids[0]');
  });
});

describe('ServerApi.getBlocks against a hostile server', () => {
  /** A server that answers with these bytes, in chunks of 1000. */
  const serving = (bytes: Uint8Array) =>
    new ServerApi('http://server.invalid', 'token', async () => {
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < bytes.length; i += 1000) chunks.push(bytes.subarray(i, i + 1000));
      return new Response(new Blob(chunks as Uint8Array<ArrayBuffer>[]).stream(), { status: 200, headers: { 'content-type': 'application/octet-stream' } });
    });

  it('returns what arrived and leaves absent and cut records out', async () => {
    const got = await serving(Buffer.concat([record(ha, a), record(hb, null)])).getBlocks(NS, [ha, hb, hc]);
    expect([...got.keys()]).toEqual([ha]);
    expect(hashOf(got.get(ha)!)).toBe(ha);
  });

  it.each([
    ['a truncated body', Buffer.concat([record(ha, a), record(hb, b).subarray(0, 5000)]), /ended inside a record/],
    ['an unasked hash', record(hashOf(block(3, 3)), c), /not asked/],
    ['out of order', Buffer.concat([record(hb, b), record(ha, a)]), /out of request order/],
    ['a length over 4 MiB', record(ha, null, MAX_BLOCK_SIZE + 1), /length/],
  ])('throws a ValidationError for %s', async (_what, bytes, message) => {
    await expect(serving(bytes).getBlocks(NS, [ha, hb, hc])).rejects.toThrow(message);
    await expect(serving(bytes).getBlocks(NS, [ha, hb, hc])).rejects.toBeInstanceOf(ValidationError);
  });
});
