import { parseNamespaceId, type NamespaceId } from './api.ts';
import { ValidationError } from './errors.ts';
import { DATA_HEADER_SIZE, FRAME_VERSION, FrameType, MAX_FRAME_SIZE } from './frames.ts';
import { LAN_PEER_ID_BYTES } from './lan-advert.ts';
import type { Cursor } from './journal.ts';
import { MAX_CURSOR } from './limits.ts';

/**
 * Messages over a LAN byte stream (the TLS connection between two LAN peers; see
 * docs/protocol.md, "LAN block service"). A byte stream has no message boundaries, so each
 * message is preceded by its length:
 *
 *   message  length u32 (1 … MAX_STREAM_MESSAGE), then `length` bytes
 *
 * A message is either a block frame (frames.ts; its first byte is FRAME_VERSION) or a LAN
 * hello (first byte HELLO_KIND, which no frame version uses). All integers are big-endian.
 */

export const STREAM_HEADER_SIZE = 4;
/** Largest message: one block frame. */
export const MAX_STREAM_MESSAGE = MAX_FRAME_SIZE;

/** The 4-byte length prefix of a message of `length` bytes. */
export function streamHeader(length: number): Uint8Array<ArrayBuffer> {
  if (!Number.isInteger(length) || length < 1 || length > MAX_STREAM_MESSAGE) {
    throw new ValidationError('stream.length', `must be from 1 to ${MAX_STREAM_MESSAGE}`);
  }
  const header = new Uint8Array(STREAM_HEADER_SIZE);
  new DataView(header.buffer).setUint32(0, length);
  return header;
}

/** One message with its length prefix, as one buffer. */
export function encodeStreamMessage(message: Uint8Array): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(STREAM_HEADER_SIZE + message.length);
  bytes.set(streamHeader(message.length), 0);
  bytes.set(message, STREAM_HEADER_SIZE);
  return bytes;
}

/**
 * Where the payload of a DATA frame goes, decided as soon as the frame's header is in: the
 * receiver's block buffer at the frame's offset, so the payload is copied once, from the TLS
 * record into the block, instead of into a message of its own first and then into the block.
 */
export interface DataPayloadSink {
  /**
   * A DATA frame (request `id`, block `offset`, `length` payload bytes) begins. Returns the
   * view of exactly `length` bytes its payload is written into, or null to have it delivered
   * as an ordinary message. Called only after every earlier message was delivered.
   */
  begin(id: number, offset: number, length: number): Uint8Array | null;
  /** The payload of the frame last begun is all written into its view. */
  end(): void;
  /**
   * Copies payload bytes into the view `begin` gave, at `offset`; without it,
   * `TypedArray#set`. Why: a view over shared memory (the LAN block buffers, which a hash
   * worker reads) makes V8's `set` copy with relaxed atomics, byte by byte when the two
   * sides are not equally aligned: seven times a plain copy (issue 14). A Node sink copies
   * natively instead.
   */
  copy?(target: Uint8Array, source: Uint8Array, offset: number): void;
}

/** version, type, id u32, offset u32 (frames.ts). */
const DATA_HEAD_BYTES = DATA_HEADER_SIZE;

/**
 * Cuts a byte stream, fed in chunks of any size, back into messages. It holds at most one
 * partial header and one partial message (≤ MAX_STREAM_MESSAGE bytes): a declared length
 * of 0 or over the limit throws ValidationError as soon as the 4 header bytes are in,
 * before any of that message is kept. After a throw the decoder is unusable (the stream
 * has lost its framing); the caller closes the connection.
 *
 * With a `DataPayloadSink`, DATA frames the sink accepts are not delivered as messages: their
 * payload goes straight into the view the sink gave (see `feed`).
 */
export class StreamDecoder {
  private readonly header = new Uint8Array(STREAM_HEADER_SIZE);
  private headerFilled = 0;
  /** The first bytes of a message, kept until it is known whether the message is a DATA frame. */
  private readonly head = new Uint8Array(DATA_HEAD_BYTES);
  private headFilled = 0;
  /** Length of the message whose head is being read; 0 when none. */
  private headOf = 0;
  /** The message being assembled, sized from its header; null between messages. */
  private message: Uint8Array | null = null;
  private messageFilled = 0;
  /** The payload view of a DATA frame being written directly; null when none. */
  private direct: Uint8Array | null = null;
  private directFilled = 0;
  private failed = false;

  constructor(private readonly sink: DataPayloadSink | null = null) {}

  /** Bytes held for an incomplete message (its header included). */
  get buffered(): number {
    return this.headerFilled + this.headFilled + this.messageFilled + this.directFilled;
  }

  /**
   * The whole messages completed by `chunk`, in order. A message that lies entirely inside
   * `chunk` is returned as a view into it (no copy); the caller must not reuse the chunk.
   * Meant for a decoder without a sink (a sink needs messages delivered in step: `feed`).
   */
  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    this.feed(chunk, (message) => out.push(message));
    return out;
  }

  /**
   * Delivers each message completed by `chunk` as soon as it is complete, so the sink's
   * `begin` always sees the effects of every earlier message. Views into `chunk` as in `push`.
   */
  feed(chunk: Uint8Array, deliver: (message: Uint8Array) => void): void {
    if (this.failed) throw new ValidationError('stream', 'framing was already lost');
    let at = 0;
    while (at < chunk.length) {
      if (this.direct !== null) {
        const take = Math.min(this.direct.length - this.directFilled, chunk.length - at);
        this.copyPayload(this.direct, chunk.subarray(at, at + take), this.directFilled);
        this.directFilled += take;
        at += take;
        if (this.directFilled === this.direct.length) {
          this.direct = null;
          this.directFilled = 0;
          this.sink!.end();
        }
        continue;
      }
      if (this.message !== null) {
        const take = Math.min(this.message.length - this.messageFilled, chunk.length - at);
        this.message.set(chunk.subarray(at, at + take), this.messageFilled);
        this.messageFilled += take;
        at += take;
        if (this.messageFilled === this.message.length) {
          const message = this.message;
          this.message = null;
          this.messageFilled = 0;
          deliver(message);
        }
        continue;
      }
      if (this.headOf > 0) {
        // A message that may be a DATA frame: its first bytes decide where the rest goes.
        const take = Math.min(DATA_HEAD_BYTES - this.headFilled, chunk.length - at);
        this.head.set(chunk.subarray(at, at + take), this.headFilled);
        this.headFilled += take;
        at += take;
        if (this.headFilled === DATA_HEAD_BYTES) this.routeMessage(this.headOf, this.head, null, deliver);
        continue;
      }
      let length: number;
      if (this.headerFilled === 0 && chunk.length - at >= STREAM_HEADER_SIZE) {
        length = this.checkLength(new DataView(chunk.buffer, chunk.byteOffset + at, STREAM_HEADER_SIZE).getUint32(0));
        at += STREAM_HEADER_SIZE;
      } else {
        const take = Math.min(STREAM_HEADER_SIZE - this.headerFilled, chunk.length - at);
        this.header.set(chunk.subarray(at, at + take), this.headerFilled);
        this.headerFilled += take;
        at += take;
        if (this.headerFilled < STREAM_HEADER_SIZE) break;
        length = this.checkLength(new DataView(this.header.buffer).getUint32(0));
        this.headerFilled = 0;
      }
      if (this.sink !== null && length > DATA_HEAD_BYTES) {
        if (chunk.length - at >= DATA_HEAD_BYTES) {
          // Fast path: the frame's head is in this chunk (maybe the whole message).
          const head = chunk.subarray(at, at + DATA_HEAD_BYTES);
          const whole = chunk.length - at >= length ? chunk.subarray(at, at + length) : null;
          const restPending = this.routeMessage(length, head, whole, deliver);
          at += restPending ? DATA_HEAD_BYTES : length;
          continue;
        }
        this.headOf = length;
        this.headFilled = 0;
        continue;
      }
      if (chunk.length - at >= length) {
        deliver(chunk.subarray(at, at + length));
        at += length;
        continue;
      }
      this.message = new Uint8Array(length);
      this.messageFilled = 0;
    }
  }

  /**
   * The head (first DATA_HEAD_BYTES bytes) of a message of `length` bytes is known. Sends a
   * DATA frame's payload to the sink's view, or else assembles (or, if `whole` holds it,
   * delivers) the message. Returns true when the head's bytes were consumed from the chunk and
   * the rest is pending (direct or assembling), false when `whole` was delivered or written.
   */
  private routeMessage(length: number, head: Uint8Array, whole: Uint8Array | null, deliver: (message: Uint8Array) => void): boolean {
    this.headOf = 0;
    this.headFilled = 0;
    let target: Uint8Array | null = null;
    if (head[0] === FRAME_VERSION && head[1] === FrameType.data) {
      const view = new DataView(head.buffer, head.byteOffset, DATA_HEAD_BYTES);
      target = this.sink!.begin(view.getUint32(2), view.getUint32(6), length - DATA_HEAD_BYTES);
      if (target !== null && target.length !== length - DATA_HEAD_BYTES) throw new Error('the payload sink gave a view of the wrong length');
    }
    if (target !== null) {
      if (whole !== null) {
        this.copyPayload(target, whole.subarray(DATA_HEAD_BYTES), 0);
        this.sink!.end();
        return false;
      }
      this.direct = target;
      this.directFilled = 0;
      return true;
    }
    if (whole !== null) {
      deliver(whole);
      return false;
    }
    this.message = new Uint8Array(length);
    this.message.set(head);
    this.messageFilled = DATA_HEAD_BYTES;
    return true;
  }

  private copyPayload(target: Uint8Array, source: Uint8Array, offset: number): void {
    if (this.sink!.copy) this.sink!.copy(target, source, offset);
    else target.set(source, offset);
  }

  private checkLength(length: number): number {
    if (length < 1 || length > MAX_STREAM_MESSAGE) {
      this.failed = true;
      this.message = null;
      this.direct = null;
      this.headerFilled = 0;
      this.headOf = 0;
      this.headFilled = 0;
      this.messageFilled = 0;
      throw new ValidationError('stream.length', `declares ${length} bytes; must be from 1 to ${MAX_STREAM_MESSAGE}`);
    }
    return length;
  }
}

// ---------------------------------------------------------------- LAN hello

/** First byte of a hello message; block frames start with FRAME_VERSION (1). */
export const HELLO_KIND = 0x80;
export const HELLO_VERSION = 1;
// The same peer id as in the UDP advert.
export { LAN_PEER_ID_BYTES };
/** Namespaces one hello may name (one TLS connection proves one today). */
export const MAX_HELLO_NAMESPACES = 16;

/**
 * Sent first by both sides once TLS is up, and again whenever the sender's cursor moves:
 * the same claim as a UDP peer download advertisement ("I hold every block of every live
 * file of `ns` up to `cursor`"), bound to the proven connection instead of a tag.
 *
 *   kind u8 (= 0x80), version u8 (= 1), peerId (16 bytes), count u8 (1 … 16),
 *   count × { nsLength u8 (16 … 64), ns (ASCII), cursor u64 (≤ 2^53 − 1) }
 */
export interface LanHello {
  /** The sender's LAN peer id (random per daemon, the same as in its UDP adverts). */
  peerId: Uint8Array;
  cursors: ReadonlyArray<{ ns: NamespaceId; cursor: Cursor }>;
}

export function isHelloMessage(message: Uint8Array): boolean {
  return message.length > 0 && message[0] === HELLO_KIND;
}

export function encodeHello(hello: LanHello): Uint8Array<ArrayBuffer> {
  if (!(hello.peerId instanceof Uint8Array) || hello.peerId.length !== LAN_PEER_ID_BYTES) {
    throw new ValidationError('hello.peerId', `must be ${LAN_PEER_ID_BYTES} bytes`);
  }
  const count = hello.cursors.length;
  if (count < 1 || count > MAX_HELLO_NAMESPACES) throw new ValidationError('hello.cursors', `must name 1 to ${MAX_HELLO_NAMESPACES} namespaces`);
  const seen = new Set<string>();
  let length = 2 + LAN_PEER_ID_BYTES + 1;
  hello.cursors.forEach(({ ns, cursor }, i) => {
    parseNamespaceId(ns, `hello.cursors[${i}].ns`);
    if (seen.has(ns)) throw new ValidationError(`hello.cursors[${i}].ns`, 'is named twice');
    seen.add(ns);
    if (!Number.isInteger(cursor) || cursor < 0 || cursor > MAX_CURSOR) {
      throw new ValidationError(`hello.cursors[${i}].cursor`, `must be an integer from 0 to ${MAX_CURSOR}`);
    }
    length += 1 + ns.length + 8;
  });
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  bytes[0] = HELLO_KIND;
  bytes[1] = HELLO_VERSION;
  bytes.set(hello.peerId, 2);
  let at = 2 + LAN_PEER_ID_BYTES;
  bytes[at++] = count;
  for (const { ns, cursor } of hello.cursors) {
    bytes[at++] = ns.length;
    for (let i = 0; i < ns.length; i++) bytes[at++] = ns.charCodeAt(i);
    view.setBigUint64(at, BigInt(cursor));
    at += 8;
  }
  return bytes;
}

/** Decodes one hello; throws ValidationError, and nothing else, unless it is exactly one. */
export function decodeHello(message: Uint8Array): LanHello {
  if (!(message instanceof Uint8Array)) throw new ValidationError('hello', 'must be bytes');
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  let at = 0;
  const need = (count: number, field: string) => {
    if (message.length - at < count) throw new ValidationError(`hello.${field}`, 'message is truncated');
  };
  need(2, 'header');
  if (message[0] !== HELLO_KIND) throw new ValidationError('hello.kind', `must be ${HELLO_KIND}`);
  if (message[1] !== HELLO_VERSION) throw new ValidationError('hello.version', `must be ${HELLO_VERSION}`);
  at = 2;
  need(LAN_PEER_ID_BYTES, 'peerId');
  const peerId = message.slice(at, at + LAN_PEER_ID_BYTES);
  at += LAN_PEER_ID_BYTES;
  need(1, 'count');
  const count = message[at++];
  if (count < 1 || count > MAX_HELLO_NAMESPACES) throw new ValidationError('hello.count', `must be from 1 to ${MAX_HELLO_NAMESPACES}`);
  const cursors: Array<{ ns: NamespaceId; cursor: Cursor }> = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    need(1, `cursors[${i}].ns`);
    const length = message[at++];
    if (length < 16 || length > 64) throw new ValidationError(`hello.cursors[${i}].ns`, 'length must be 16 to 64');
    need(length, `cursors[${i}].ns`);
    let text = '';
    for (let j = 0; j < length; j++) {
      const code = message[at + j];
      if (code < 0x21 || code > 0x7e) throw new ValidationError(`hello.cursors[${i}].ns`, 'must be ASCII');
      text += String.fromCharCode(code);
    }
    at += length;
    const ns = parseNamespaceId(text, `hello.cursors[${i}].ns`);
    if (seen.has(ns)) throw new ValidationError(`hello.cursors[${i}].ns`, 'is named twice');
    seen.add(ns);
    need(8, `cursors[${i}].cursor`);
    const big = view.getBigUint64(at);
    at += 8;
    if (big > BigInt(MAX_CURSOR)) throw new ValidationError(`hello.cursors[${i}].cursor`, `must be at most ${MAX_CURSOR}`);
    cursors.push({ ns, cursor: Number(big) });
  }
  if (at !== message.length) throw new ValidationError('hello', 'has trailing bytes');
  return { peerId, cursors };
}
