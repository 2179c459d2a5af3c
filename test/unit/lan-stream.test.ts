import { describe, expect, it } from 'vitest';
import { ValidationError, decodeFrame, encodeFrame, type NamespaceId } from '../../src/protocol/index.ts';
import {
  HELLO_KIND,
  MAX_STREAM_MESSAGE,
  STREAM_HEADER_SIZE,
  StreamDecoder,
  decodeHello,
  encodeHello,
  encodeStreamMessage,
  isHelloMessage,
  streamHeader,
} from '../../src/protocol/lan-stream.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const OTHER = 'otherotherotherother12' as NamespaceId;

function bytesOf(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

/** Byte-wise equality of two message lists (vitest's deep equality is slow on 256 KiB arrays). */
function sameMessages(actual: Uint8Array[], expected: Uint8Array[]): boolean {
  return actual.length === expected.length && actual.every((message, i) => Buffer.from(message).equals(Buffer.from(expected[i])));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Feeds `stream` to a fresh decoder in chunks of the sizes `cut` gives; returns copies of what came out. */
function decodeInChunks(stream: Uint8Array, cut: (index: number) => number): Uint8Array[] {
  const decoder = new StreamDecoder();
  const out: Uint8Array[] = [];
  let at = 0;
  for (let i = 0; at < stream.length; i++) {
    const size = Math.max(1, cut(i));
    for (const message of decoder.push(stream.subarray(at, at + size))) out.push(message.slice());
    at += size;
  }
  expect(decoder.buffered).toBe(0);
  return out;
}

describe('DATA payloads written straight into the receiver\'s buffers', () => {
  const data = (id: number, offset: number, length: number, seed: number) => encodeFrame({ type: 'data', id, offset, bytes: bytesOf(length, seed) });
  // A hello, DATA frames the sink takes (ids 1 and 2), one it declines (id 9), a short one, an END.
  const frames = [
    encodeHello({ peerId: bytesOf(16, 7), cursors: [{ ns: NS, cursor: 3 }] }),
    data(1, 0, 70_000, 1),
    data(2, 0, 11, 2),
    data(9, 0, 500, 3),
    data(1, 70_000, 200_000, 4),
    encodeFrame({ type: 'data', id: 2, offset: 11, bytes: new Uint8Array([42]) }),
    encodeFrame({ type: 'end', id: 1, totalLength: 270_000 }),
  ];
  const stream = concat(frames.map(encodeStreamMessage));

  function run(cut: (index: number) => number) {
    const blocks = new Map([
      [1, new Uint8Array(270_000)],
      [2, new Uint8Array(12)],
    ]);
    const events: string[] = [];
    let open: { id: number; offset: number; length: number } | null = null;
    const decoder = new StreamDecoder({
      begin(id, offset, length) {
        expect(open).toBeNull();
        const block = blocks.get(id);
        if (!block) return null;
        open = { id, offset, length };
        return block.subarray(offset, offset + length);
      },
      end() {
        events.push(`data ${open!.id}@${open!.offset}+${open!.length}`);
        open = null;
      },
    });
    let at = 0;
    for (let i = 0; at < stream.length; i++) {
      const size = Math.max(1, cut(i));
      decoder.feed(stream.subarray(at, at + size), (message) => {
        if (isHelloMessage(message)) return void events.push('hello');
        const frame = decodeFrame(message);
        events.push(frame.type === 'data' ? `message data ${frame.id}@${frame.offset}+${frame.bytes.length}` : `message ${frame.type} ${'id' in frame ? frame.id : ''}`);
      });
      at += size;
    }
    expect(decoder.buffered).toBe(0);
    return { events, blocks };
  }

  it('writes each accepted payload at its offset and delivers everything else in stream order, however the stream is cut', () => {
    const expectedEvents = ['hello', 'data 1@0+70000', 'data 2@0+11', 'message data 9@0+500', 'data 1@70000+200000', 'data 2@11+1', 'message end 1'];
    const cuts: Array<(index: number) => number> = [() => stream.length, () => 1, () => 7, () => 16_384, (i) => [3, 10, 11, 4, 9000][i % 5]];
    for (const cut of cuts) {
      const { events, blocks } = run(cut);
      expect(events).toEqual(expectedEvents);
      expect(Buffer.from(blocks.get(1)!).equals(Buffer.from(concat([bytesOf(70_000, 1), bytesOf(200_000, 4)])))).toBe(true);
      expect([...blocks.get(2)!]).toEqual([...bytesOf(11, 2), 42]);
    }
  });

  it('still refuses a declared length of 0 with a sink', () => {
    const decoder = new StreamDecoder({ begin: () => null, end: () => undefined });
    expect(() => decoder.feed(new Uint8Array([0, 0, 0, 0]), () => undefined)).toThrow(ValidationError);
  });
});

describe('LAN stream framing', () => {
  const messages = [bytesOf(1, 1), bytesOf(2, 2), bytesOf(70_000, 3), bytesOf(MAX_STREAM_MESSAGE, 4), bytesOf(5, 5)];
  const stream = concat(messages.map(encodeStreamMessage));

  it('prefixes each message with its length, big-endian', () => {
    expect([...encodeStreamMessage(new Uint8Array([9, 8, 7]))]).toEqual([0, 0, 0, 3, 9, 8, 7]);
    expect([...streamHeader(0x012345)]).toEqual([0, 0x01, 0x23, 0x45]);
  });

  it('refuses to encode an empty or oversized message', () => {
    expect(() => encodeStreamMessage(new Uint8Array(0))).toThrow(ValidationError);
    expect(() => encodeStreamMessage(new Uint8Array(MAX_STREAM_MESSAGE + 1))).toThrow(ValidationError);
  });

  it('yields the same messages whatever the chunk boundaries', () => {
    expect(sameMessages(decodeInChunks(stream, () => stream.length), messages)).toBe(true);
    expect(sameMessages(decodeInChunks(stream, () => 3), messages)).toBe(true);
    expect(sameMessages(decodeInChunks(stream, (i) => [5, 1, 4, 65_536, 7, 2][i % 6]), messages)).toBe(true);
    // Boundaries right at each header's end and inside it.
    expect(sameMessages(decodeInChunks(stream, (i) => (i % 2 === 0 ? STREAM_HEADER_SIZE : 100_003)), messages)).toBe(true);
  });

  it('yields the same messages fed one byte at a time', () => {
    const small = concat([bytesOf(1, 7), bytesOf(300, 8), bytesOf(2, 9)].map(encodeStreamMessage));
    expect(decodeInChunks(small, () => 1)).toEqual([bytesOf(1, 7), bytesOf(300, 8), bytesOf(2, 9)]);
  });

  it('holds a partial message until the rest arrives', () => {
    const decoder = new StreamDecoder();
    const one = encodeStreamMessage(bytesOf(1000, 1));
    expect(decoder.push(one.subarray(0, 2))).toEqual([]);
    expect(decoder.buffered).toBe(2);
    expect(decoder.push(one.subarray(2, 500))).toEqual([]);
    expect(decoder.buffered).toBe(500 - STREAM_HEADER_SIZE);
    const out = decoder.push(one.subarray(500));
    expect(out).toHaveLength(1);
    expect(out[0]).toEqual(bytesOf(1000, 1));
  });

  it('refuses an oversized length as soon as its header is in, keeping nothing', () => {
    const decoder = new StreamDecoder();
    const header = new Uint8Array([0, 0x04, 0x00, 0x01]); // MAX + 1
    expect(decoder.push(header.subarray(0, 3))).toEqual([]);
    expect(() => decoder.push(header.subarray(3))).toThrow(/stream.length/);
    expect(decoder.buffered).toBe(0);
    // The stream's framing is lost for good.
    expect(() => decoder.push(new Uint8Array([0, 0, 0, 1, 1]))).toThrow(ValidationError);

    // A 4 GiB claim in one chunk, with a few bytes after it: refused without allocating.
    const huge = new StreamDecoder();
    expect(() => huge.push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2, 3]))).toThrow(ValidationError);
    expect(huge.buffered).toBe(0);
  });

  it('refuses a zero length', () => {
    expect(() => new StreamDecoder().push(new Uint8Array([0, 0, 0, 0]))).toThrow(/stream.length/);
  });

  it('delivers the messages before a bad header only if they came in an earlier push', () => {
    const decoder = new StreamDecoder();
    expect(decoder.push(encodeStreamMessage(bytesOf(3, 1)))).toHaveLength(1);
    expect(() => decoder.push(concat([encodeStreamMessage(bytesOf(3, 2)), new Uint8Array([0xff, 0, 0, 0])]))).toThrow(ValidationError);
  });
});

describe('LAN hello', () => {
  const peerId = bytesOf(16, 42);

  it('round-trips peer id and cursors', () => {
    const hello = { peerId, cursors: [{ ns: NS, cursor: 0 }, { ns: OTHER, cursor: Number.MAX_SAFE_INTEGER }] };
    const bytes = encodeHello(hello);
    expect(bytes[0]).toBe(HELLO_KIND);
    expect(isHelloMessage(bytes)).toBe(true);
    expect(decodeHello(bytes)).toEqual(hello);
  });

  it('has the documented layout', () => {
    const bytes = encodeHello({ peerId, cursors: [{ ns: NS, cursor: 0x0102 }] });
    expect(bytes.length).toBe(2 + 16 + 1 + 1 + NS.length + 8);
    expect([...bytes.subarray(0, 2)]).toEqual([0x80, 1]);
    expect(bytes.subarray(2, 18)).toEqual(peerId);
    expect(bytes[18]).toBe(1);
    expect(bytes[19]).toBe(NS.length);
    expect(new TextDecoder().decode(bytes.subarray(20, 20 + NS.length))).toBe(NS);
    expect([...bytes.subarray(20 + NS.length)]).toEqual([0, 0, 0, 0, 0, 0, 1, 2]);
  });

  it('refuses to encode bad fields', () => {
    expect(() => encodeHello({ peerId: new Uint8Array(15), cursors: [{ ns: NS, cursor: 1 }] })).toThrow(ValidationError);
    expect(() => encodeHello({ peerId, cursors: [] })).toThrow(ValidationError);
    expect(() => encodeHello({ peerId, cursors: [{ ns: NS, cursor: -1 }] })).toThrow(ValidationError);
    expect(() => encodeHello({ peerId, cursors: [{ ns: NS, cursor: 1 }, { ns: NS, cursor: 2 }] })).toThrow(ValidationError);
    expect(() => encodeHello({ peerId, cursors: [{ ns: 'short' as NamespaceId, cursor: 1 }] })).toThrow(ValidationError);
  });

  it('refuses every malformed hello with a ValidationError', () => {
    const good = encodeHello({ peerId, cursors: [{ ns: NS, cursor: 7 }] });
    const nsAt = 20;
    const cursorAt = nsAt + NS.length;
    const mutate = (change: (bytes: Uint8Array) => void, length = good.length) => {
      const bytes = new Uint8Array(length);
      bytes.set(good.subarray(0, Math.min(length, good.length)));
      change(bytes);
      return bytes;
    };
    const bad: Array<[string, Uint8Array]> = [
      ['empty', new Uint8Array(0)],
      ['a block frame', new Uint8Array([1, 1, 0, 0, 0, 1])],
      ['wrong version', mutate((b) => (b[1] = 2))],
      ['truncated peer id', good.slice(0, 10)],
      ['zero namespaces', mutate((b) => (b[18] = 0))],
      ['too many namespaces', mutate((b) => (b[18] = 17))],
      ['count says two, one present', mutate((b) => (b[18] = 2))],
      ['namespace too short', mutate((b) => (b[19] = 15))],
      ['namespace length past the end', mutate((b) => (b[19] = 64))],
      ['non-ASCII namespace', mutate((b) => (b[nsAt] = 0xc3))],
      ['namespace with a forbidden character', mutate((b) => (b[nsAt] = 0x2f))],
      ['cursor past 2^53 - 1', mutate((b) => (b[cursorAt + 1] = 0x20))],
      ['truncated cursor', good.slice(0, good.length - 1)],
      ['trailing byte', mutate(() => {}, good.length + 1)],
    ];
    for (const [what, bytes] of bad) {
      expect(() => decodeHello(bytes), what).toThrow(ValidationError);
    }
    const twice = encodeHello({ peerId, cursors: [{ ns: NS, cursor: 1 }, { ns: OTHER, cursor: 2 }] });
    twice.set(new TextEncoder().encode(NS.slice(0, OTHER.length)), 20 + NS.length + 8 + 1);
    twice[20 + NS.length + 8] = NS.length; // same length as NS here, so the bytes now name NS twice
    expect(() => decodeHello(twice)).toThrow(/named twice/);
  });
});
