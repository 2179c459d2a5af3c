import { describe, expect, it } from 'vitest';
import {
  BLOCK_CHUNK_SIZE,
  FRAME_VERSION,
  MAX_BLOCK_SIZE,
  MAX_DATA_BYTES,
  MAX_FRAME_SIZE,
  MAX_HAVE_HASHES,
  NACK_REASONS,
  ValidationError,
  decodeFrame,
  encodeFrame,
  type BlockHash,
  type Frame,
  type NamespaceId,
} from '../../src/protocol/index.ts';

const NS = 'gLYh2GuQa-XXMRoUUKJCRg' as NamespaceId;
const HASH = 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9' as BlockHash;
const H = (c: string) => c.repeat(64) as BlockHash;
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const fromHex = (text: string) => new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));

/** A frame with DATA bytes as hex: deep equality over large typed arrays is slow. */
const plain = (frame: Frame) => (frame.type === 'data' ? { ...frame, bytes: hex(frame.bytes) } : frame);

function rejects(bytes: Uint8Array): ValidationError {
  try {
    decodeFrame(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error(`decoded ${hex(bytes).slice(0, 40)}… without complaint`);
}

const samples: Frame[] = [
  { type: 'request', id: 1, ns: NS, hash: HASH },
  { type: 'request', id: 0xffff_ffff, ns: 'a'.repeat(64) as NamespaceId, hash: H('f') },
  { type: 'data', id: 7, offset: 0, bytes: new Uint8Array([1, 2, 3]) },
  { type: 'data', id: 7, offset: MAX_BLOCK_SIZE - MAX_DATA_BYTES, bytes: new Uint8Array(MAX_DATA_BYTES).fill(9) },
  { type: 'end', id: 7, totalLength: 1 },
  { type: 'end', id: 7, totalLength: MAX_BLOCK_SIZE },
  ...NACK_REASONS.map((reason): Frame => ({ type: 'nack', id: 3, reason })),
  { type: 'cancel', id: 42 },
  { type: 'have', ns: NS, hashes: [HASH] },
  { type: 'fetching', ns: NS, hashes: [HASH] },
  { type: 'have', ns: NS, hashes: Array.from({ length: MAX_HAVE_HASHES }, (_, i) => i.toString(16).padStart(64, '0') as BlockHash) },
];

describe('block frames: round trips', () => {
  it.each(samples.map((frame, i) => [`${frame.type} #${i}`, frame] as const))('%s', (_label, frame) => {
    const bytes = encodeFrame(frame);
    expect(bytes.length).toBeLessThanOrEqual(MAX_FRAME_SIZE);
    expect(bytes[0]).toBe(FRAME_VERSION);
    expect(plain(decodeFrame(bytes))).toEqual(plain(frame));
  });

  it('lays out a REQUEST as documented', () => {
    expect(hex(encodeFrame({ type: 'request', id: 1, ns: NS, hash: HASH }))).toBe(
      '0101' + '00000001' + '16' + hex(new TextEncoder().encode(NS)) + HASH,
    );
  });

  it('decodes the documented examples', () => {
    expect(decodeFrame(fromHex('0102 00000001 00010000 cafe'))).toEqual({
      type: 'data',
      id: 1,
      offset: 65536,
      bytes: new Uint8Array([0xca, 0xfe]),
    });
    expect(decodeFrame(fromHex('0103 00000001 00400000'))).toEqual({ type: 'end', id: 1, totalLength: MAX_BLOCK_SIZE });
    expect(decodeFrame(fromHex('0104 00000002 03'))).toEqual({ type: 'nack', id: 2, reason: 'busy' });
    expect(decodeFrame(fromHex('0105 00000002'))).toEqual({ type: 'cancel', id: 2 });
  });

  it('decodes frames that sit inside a larger buffer', () => {
    const bytes = encodeFrame({ type: 'end', id: 9, totalLength: 5 });
    const padded = new Uint8Array(bytes.length + 7);
    padded.set(bytes, 3);
    expect(decodeFrame(padded.subarray(3, 3 + bytes.length))).toEqual({ type: 'end', id: 9, totalLength: 5 });
  });

  it('chooses a chunk size that fits in one frame', () => {
    expect(BLOCK_CHUNK_SIZE).toBeGreaterThan(0);
    expect(BLOCK_CHUNK_SIZE).toBeLessThanOrEqual(MAX_DATA_BYTES);
    expect(MAX_BLOCK_SIZE % BLOCK_CHUNK_SIZE).toBe(0);
  });
});

describe('block frames: malformed input', () => {
  it('rejects every truncation of every frame type', () => {
    for (const frame of samples) {
      const bytes = encodeFrame(frame);
      // DATA has no fixed end: any cut past its 10-byte header is still a (shorter) chunk.
      const limit = frame.type === 'data' ? 11 : bytes.length;
      for (let cut = 0; cut < limit; cut++) {
        if (cut === 200 && limit > 400) cut = limit - 200; // the long HAVE: its head and its tail
        rejects(bytes.subarray(0, cut));
      }
    }
  });

  it('rejects trailing bytes after fixed-size frames', () => {
    for (const frame of samples.filter((f) => f.type !== 'data')) {
      const bytes = encodeFrame(frame);
      const longer = new Uint8Array(bytes.length + 1);
      longer.set(bytes);
      rejects(longer);
    }
  });

  it('rejects an unknown version or type', () => {
    const bytes = encodeFrame({ type: 'cancel', id: 1 });
    for (const version of [0, 2, 255]) rejects(Uint8Array.of(version, ...bytes.subarray(1)));
    for (const type of [0, 9, 255]) expect(rejects(Uint8Array.of(1, type, 0, 0, 0, 1)).field).toBe('frame.type');
  });

  it('rejects a frame larger than the maximum', () => {
    const big = new Uint8Array(MAX_FRAME_SIZE + 1);
    big.set([1, 2, 0, 0, 0, 1, 0, 0, 0, 0]);
    rejects(big);
  });

  it('rejects id 0', () => {
    rejects(fromHex('0105 00000000'));
    rejects(fromHex('0104 00000000 01'));
    rejects(fromHex('0103 00000000 00000001'));
  });

  it('rejects bad namespaces', () => {
    const request = (ns: Uint8Array) => Uint8Array.of(1, 1, 0, 0, 0, 1, ns.length, ...ns, ...fromHex(HASH));
    const ascii = (text: string) => new TextEncoder().encode(text);
    rejects(request(ascii('a'.repeat(15))));
    rejects(request(ascii('a'.repeat(65))));
    rejects(request(ascii('a'.repeat(15) + '.')));
    rejects(request(ascii('a'.repeat(15) + ' ')));
    rejects(request(Uint8Array.of(...ascii('a'.repeat(15)), 0xc3)));
    rejects(request(Uint8Array.of(...ascii('a'.repeat(15)), 0)));
    // A length byte that claims more than the frame holds.
    rejects(Uint8Array.of(1, 1, 0, 0, 0, 1, 200, ...ascii('a'.repeat(20))));
  });

  it('rejects DATA that is empty or reaches past the largest block', () => {
    rejects(fromHex('0102 00000001 00000000'));
    rejects(fromHex('0102 00000001 003fffff 0102'));
    rejects(fromHex('0102 00000001 ffffffff 01'));
    expect(decodeFrame(fromHex('0102 00000001 003fffff 01')).type).toBe('data');
  });

  it('rejects END lengths of 0 or past the largest block', () => {
    rejects(fromHex('0103 00000001 00000000'));
    rejects(fromHex('0103 00000001 00400001'));
    rejects(fromHex('0103 00000001 ffffffff'));
  });

  it('rejects unknown NACK reasons', () => {
    for (const code of [0, NACK_REASONS.length + 1, 255]) rejects(Uint8Array.of(1, 4, 0, 0, 0, 1, code));
  });

  it('rejects HAVE whose count is 0, too large, or does not match the hashes', () => {
    const have = (count: number, hashBytes: number) => {
      const head = [1, 6, NS.length, ...new TextEncoder().encode(NS), count >> 8, count & 255];
      const bytes = new Uint8Array(head.length + hashBytes);
      bytes.set(head);
      return bytes;
    };
    rejects(have(0, 0));
    rejects(have(MAX_HAVE_HASHES + 1, (MAX_HAVE_HASHES + 1) * 32));
    rejects(have(2, 32));
    rejects(have(1, 64));
    rejects(have(1, 33));
    rejects(have(1, 31));
    expect(decodeFrame(have(1, 32))).toEqual({ type: 'have', ns: NS, hashes: [H('0')] });
  });

  it('rejects what is not bytes', () => {
    for (const value of [null, undefined, 'frame', [1, 5, 0, 0, 0, 1], new ArrayBuffer(6)]) {
      expect(() => decodeFrame(value as unknown as Uint8Array)).toThrow(ValidationError);
    }
  });

  it('throws nothing but ValidationError on random and mutated input', () => {
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    const encoded = samples.filter((f) => f.type !== 'have' || f.hashes.length < 10).map(encodeFrame);
    for (let round = 0; round < 10_000; round++) {
      let bytes: Uint8Array;
      if (round % 2 === 0) {
        bytes = new Uint8Array(Math.floor(random() * 120)).map(() => Math.floor(random() * 256));
        if (bytes.length > 1 && random() < 0.8) bytes[0] = 1;
        if (bytes.length > 2 && random() < 0.8) bytes[1] = 1 + Math.floor(random() * 6);
      } else {
        bytes = encoded[Math.floor(random() * encoded.length)].slice();
        const flips = 1 + Math.floor(random() * 3);
        for (let i = 0; i < flips; i++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
        if (random() < 0.3) bytes = bytes.subarray(0, Math.floor(random() * bytes.length));
      }
      try {
        const frame = decodeFrame(bytes);
        // Whatever decodes must encode back to the same bytes.
        expect(hex(encodeFrame(frame))).toBe(hex(bytes));
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
      }
    }
  });
});

describe('block frames: encoder checks', () => {
  it.each([
    ['id 0', { type: 'cancel', id: 0 }],
    ['id too large', { type: 'cancel', id: 2 ** 32 }],
    ['fractional id', { type: 'end', id: 1.5, totalLength: 1 }],
    ['bad hash', { type: 'request', id: 1, ns: NS, hash: 'ABC' }],
    ['upper-case hash', { type: 'request', id: 1, ns: NS, hash: HASH.toUpperCase() }],
    ['bad namespace', { type: 'request', id: 1, ns: 'short', hash: HASH }],
    ['empty data', { type: 'data', id: 1, offset: 0, bytes: new Uint8Array(0) }],
    ['oversize data', { type: 'data', id: 1, offset: 0, bytes: new Uint8Array(MAX_DATA_BYTES + 1) }],
    ['data past block end', { type: 'data', id: 1, offset: MAX_BLOCK_SIZE, bytes: new Uint8Array(1) }],
    ['end of 0', { type: 'end', id: 1, totalLength: 0 }],
    ['unknown reason', { type: 'nack', id: 1, reason: 'tired' }],
    ['empty have', { type: 'have', ns: NS, hashes: [] }],
    ['oversize have', { type: 'have', ns: NS, hashes: Array(MAX_HAVE_HASHES + 1).fill(HASH) }],
    ['unknown type', { type: 'hello' }],
  ])('refuses %s', (_label, frame) => {
    expect(() => encodeFrame(frame as unknown as Frame)).toThrow(ValidationError);
  });
});
