import { parseNamespaceId, type NamespaceId } from './api.ts';
import { isBlockHash, type BlockHash } from './block-hash.ts';
import { ValidationError } from './errors.ts';
import { MAX_BLOCK_SIZE } from './limits.ts';

/**
 * Binary frames exchanged between two peers on a block data channel (docs/protocol.md,
 * "Block frames"). One frame is one channel message. All integers are big-endian.
 *
 *   header   version u8 (= 1), type u8
 *   REQUEST  id u32, nsLength u8, ns (ASCII), hash (32 bytes)
 *   DATA     id u32, offset u32, bytes (1 … MAX_DATA_BYTES)
 *   END      id u32, totalLength u32 (1 … MAX_BLOCK_SIZE)
 *   NACK     id u32, reason u8
 *   CANCEL   id u32
 *   HAVE     nsLength u8, ns (ASCII), count u16 (1 … MAX_HAVE_HASHES), count × hash (32 bytes)
 *   FETCHING same body as HAVE: "I am fetching these from the server; ask me after my HAVE"
 *   REQUEST_FROM id u32, from u32 (a multiple of 65,536 below MAX_BLOCK_SIZE), nsLength u8, ns, hash:
 *            a reader's request: served before queued ones, the DATA starting at `from`, then
 *            wrapping to 0 (sent only to peers that announced FEATURE_RANGE_REQUESTS)
 *
 * The decoder checks every field and throws only ValidationError; it never reads past the
 * input and refuses trailing bytes, so a peer cannot smuggle anything through a frame.
 */

export const FRAME_VERSION = 1;

export const FrameType = {
  request: 1,
  data: 2,
  end: 3,
  nack: 4,
  cancel: 5,
  have: 6,
  fetching: 7,
  requestFrom: 8,
} as const;

/**
 * A HAVE hash that announces a capability, not a block: "I understand REQUEST_FROM". Carried
 * in HAVE so that peers that do not know it (version 1 without type 8) take it as a block
 * nobody holds, and ignore it; a new frame type would make them close the link. No block has
 * this hash (a SHA-256 of all one bits has no known preimage).
 */
export const FEATURE_RANGE_REQUESTS = 'f'.repeat(64) as BlockHash;
/** REQUEST_FROM's `from` is a multiple of this (the piece size of POST /ns/:ns/pieces). */
export const REQUEST_FROM_ALIGNMENT = 64 * 1024;

export const NACK_REASONS = ['not_found', 'forbidden', 'busy', 'shutting_down', 'bad_request'] as const;
export type NackReason = (typeof NACK_REASONS)[number];

/** Largest frame on the wire: Chromium's data channel `maxMessageSize` (256 KiB). */
export const MAX_FRAME_SIZE = 256 * 1024;
export const DATA_HEADER_SIZE = 10;
/** Largest payload of one DATA frame. */
export const MAX_DATA_BYTES = MAX_FRAME_SIZE - DATA_HEADER_SIZE;
/**
 * Payload bytes a server puts in one DATA frame. 64 KiB measured as fast as larger chunks
 * (test/integration/peer-link-wrtc.test.ts; Chromium to Chromium: ≈28 MB/s for 64–256 KiB
 * against ≈22 MB/s at 16 KiB) while keeping the sender's buffered bytes fine-grained.
 */
export const BLOCK_CHUNK_SIZE = 64 * 1024;
/** Hashes one HAVE frame may carry. */
export const MAX_HAVE_HASHES = 4096;
export const MAX_REQUEST_ID = 0xffff_ffff;

const HASH_BYTES = 32;
const MIN_NS_LENGTH = 16;
const MAX_NS_LENGTH = 64;

export interface RequestFrame {
  type: 'request';
  id: number;
  ns: NamespaceId;
  hash: BlockHash;
}
/** A reader's request: answered before queued requests, its DATA from `from` to the end, then from 0. */
export interface RequestFromFrame {
  type: 'request-from';
  id: number;
  from: number;
  ns: NamespaceId;
  hash: BlockHash;
}
export interface DataFrame {
  type: 'data';
  id: number;
  offset: number;
  /** On decode, a view into the decoded message (not a copy). */
  bytes: Uint8Array;
}
export interface EndFrame {
  type: 'end';
  id: number;
  totalLength: number;
}
export interface NackFrame {
  type: 'nack';
  id: number;
  reason: NackReason;
}
export interface CancelFrame {
  type: 'cancel';
  id: number;
}
/** HAVE: blocks held beyond the advertised cursor. FETCHING: blocks being fetched from the server. */
export interface HaveFrame {
  type: 'have' | 'fetching';
  ns: NamespaceId;
  hashes: BlockHash[];
}

export type Frame = RequestFrame | RequestFromFrame | DataFrame | EndFrame | NackFrame | CancelFrame | HaveFrame;

// ---------------------------------------------------------------- encoding

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function checkId(id: number, field: string): void {
  if (!Number.isInteger(id) || id < 1 || id > MAX_REQUEST_ID) {
    throw new ValidationError(field, `must be an integer from 1 to ${MAX_REQUEST_ID}`);
  }
}

function checkFrom(from: number): void {
  if (!Number.isInteger(from) || from < 0 || from >= MAX_BLOCK_SIZE || from % REQUEST_FROM_ALIGNMENT !== 0) {
    throw new ValidationError('request.from', `must be a multiple of ${REQUEST_FROM_ALIGNMENT} below ${MAX_BLOCK_SIZE}`);
  }
}

function checkNamespace(ns: string, field: string): void {
  parseNamespaceId(ns, field);
}

function writeHash(target: Uint8Array, at: number, hash: string, field: string): void {
  if (!isBlockHash(hash)) throw new ValidationError(field, 'must be 64 lower-case hex digits (SHA-256)');
  for (let i = 0; i < HASH_BYTES; i++) target[at + i] = parseInt(hash.slice(i * 2, i * 2 + 2), 16);
}

function writeNamespace(target: Uint8Array, at: number, ns: string): number {
  target[at] = ns.length;
  for (let i = 0; i < ns.length; i++) target[at + 1 + i] = ns.charCodeAt(i);
  return at + 1 + ns.length;
}

function frameBuffer(type: number, bodyLength: number): { bytes: Uint8Array<ArrayBuffer>; view: DataView } {
  const bytes = new Uint8Array(2 + bodyLength);
  bytes[0] = FRAME_VERSION;
  bytes[1] = type;
  return { bytes, view: new DataView(bytes.buffer) };
}

/**
 * The first DATA_HEADER_SIZE bytes of a DATA frame carrying `length` payload bytes: a channel
 * over a byte stream sends them and the payload back to back, without joining them in a copy.
 */
export function encodeDataHead(id: number, offset: number, length: number): Uint8Array<ArrayBuffer> {
  checkId(id, 'data.id');
  if (!Number.isInteger(length) || length < 1 || length > MAX_DATA_BYTES) throw new ValidationError('data.bytes', `must hold 1 to ${MAX_DATA_BYTES} bytes`);
  if (!Number.isInteger(offset) || offset < 0 || offset + length > MAX_BLOCK_SIZE) {
    throw new ValidationError('data.offset', `must keep the chunk within ${MAX_BLOCK_SIZE} bytes`);
  }
  const { bytes, view } = frameBuffer(FrameType.data, 8);
  view.setUint32(2, id);
  view.setUint32(6, offset);
  return bytes;
}

/** Encodes one frame; throws ValidationError when a field is out of its range. */
export function encodeFrame(frame: Frame): Uint8Array<ArrayBuffer> {
  switch (frame.type) {
    case 'request': {
      checkId(frame.id, 'request.id');
      checkNamespace(frame.ns, 'request.ns');
      const { bytes, view } = frameBuffer(FrameType.request, 4 + 1 + frame.ns.length + HASH_BYTES);
      view.setUint32(2, frame.id);
      const at = writeNamespace(bytes, 6, frame.ns);
      writeHash(bytes, at, frame.hash, 'request.hash');
      return bytes;
    }
    case 'request-from': {
      checkId(frame.id, 'request.id');
      checkFrom(frame.from);
      checkNamespace(frame.ns, 'request.ns');
      const { bytes, view } = frameBuffer(FrameType.requestFrom, 8 + 1 + frame.ns.length + HASH_BYTES);
      view.setUint32(2, frame.id);
      view.setUint32(6, frame.from);
      const at = writeNamespace(bytes, 10, frame.ns);
      writeHash(bytes, at, frame.hash, 'request.hash');
      return bytes;
    }
    case 'data': {
      const head = encodeDataHead(frame.id, frame.offset, frame.bytes.length);
      const bytes = new Uint8Array(DATA_HEADER_SIZE + frame.bytes.length);
      bytes.set(head);
      bytes.set(frame.bytes, DATA_HEADER_SIZE);
      return bytes;
    }
    case 'end': {
      checkId(frame.id, 'end.id');
      if (!Number.isInteger(frame.totalLength) || frame.totalLength < 1 || frame.totalLength > MAX_BLOCK_SIZE) {
        throw new ValidationError('end.totalLength', `must be from 1 to ${MAX_BLOCK_SIZE}`);
      }
      const { bytes, view } = frameBuffer(FrameType.end, 8);
      view.setUint32(2, frame.id);
      view.setUint32(6, frame.totalLength);
      return bytes;
    }
    case 'nack': {
      checkId(frame.id, 'nack.id');
      const code = NACK_REASONS.indexOf(frame.reason);
      if (code < 0) throw new ValidationError('nack.reason', `must be one of ${NACK_REASONS.join(', ')}`);
      const { bytes, view } = frameBuffer(FrameType.nack, 5);
      view.setUint32(2, frame.id);
      bytes[6] = code + 1;
      return bytes;
    }
    case 'cancel': {
      checkId(frame.id, 'cancel.id');
      const { bytes, view } = frameBuffer(FrameType.cancel, 4);
      view.setUint32(2, frame.id);
      return bytes;
    }
    case 'have':
    case 'fetching': {
      checkNamespace(frame.ns, 'have.ns');
      const count = frame.hashes.length;
      if (count < 1 || count > MAX_HAVE_HASHES) throw new ValidationError('have.hashes', `must hold 1 to ${MAX_HAVE_HASHES} hashes`);
      const { bytes, view } = frameBuffer(FrameType[frame.type], 1 + frame.ns.length + 2 + count * HASH_BYTES);
      let at = writeNamespace(bytes, 2, frame.ns);
      view.setUint16(at, count);
      at += 2;
      frame.hashes.forEach((hash, i) => writeHash(bytes, at + i * HASH_BYTES, hash, `have.hashes[${i}]`));
      return bytes;
    }
    default:
      throw new ValidationError('frame.type', 'is not a known frame type');
  }
}

// ---------------------------------------------------------------- decoding

/** Reads fields front to back; every read checks the remaining length first. */
class Reader {
  private at = 2;
  private readonly view: DataView;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly kind: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private need(count: number, field: string): void {
    if (this.bytes.length - this.at < count) throw new ValidationError(`${this.kind}.${field}`, 'frame is truncated');
  }
  u8(field: string): number {
    this.need(1, field);
    return this.view.getUint8(this.at++);
  }
  u16(field: string): number {
    this.need(2, field);
    const value = this.view.getUint16(this.at);
    this.at += 2;
    return value;
  }
  u32(field: string): number {
    this.need(4, field);
    const value = this.view.getUint32(this.at);
    this.at += 4;
    return value;
  }
  id(): number {
    const id = this.u32('id');
    if (id === 0) throw new ValidationError(`${this.kind}.id`, 'must not be 0');
    return id;
  }
  namespace(): NamespaceId {
    const length = this.u8('ns');
    if (length < MIN_NS_LENGTH || length > MAX_NS_LENGTH) {
      throw new ValidationError(`${this.kind}.ns`, `length must be ${MIN_NS_LENGTH} to ${MAX_NS_LENGTH}`);
    }
    this.need(length, 'ns');
    let text = '';
    for (let i = 0; i < length; i++) {
      const code = this.bytes[this.at + i];
      // Only printable ASCII reaches the string; parseNamespaceId narrows it further.
      if (code < 0x21 || code > 0x7e) throw new ValidationError(`${this.kind}.ns`, 'must be ASCII');
      text += String.fromCharCode(code);
    }
    this.at += length;
    return parseNamespaceId(text, `${this.kind}.ns`);
  }
  hash(field: string): BlockHash {
    this.need(HASH_BYTES, field);
    let hex = '';
    for (let i = 0; i < HASH_BYTES; i++) hex += HEX[this.bytes[this.at + i]];
    this.at += HASH_BYTES;
    return hex as BlockHash;
  }
  remaining(): number {
    return this.bytes.length - this.at;
  }
  rest(): Uint8Array {
    const rest = this.bytes.subarray(this.at);
    this.at = this.bytes.length;
    return rest;
  }
  end(): void {
    if (this.at !== this.bytes.length) throw new ValidationError(this.kind, 'has trailing bytes');
  }
}

/**
 * Decodes one channel message. Throws ValidationError, and nothing else, for any input
 * that is not exactly one well-formed frame of this version.
 */
export function decodeFrame(message: Uint8Array): Frame {
  if (!(message instanceof Uint8Array)) throw new ValidationError('frame', 'must be bytes');
  if (message.length > MAX_FRAME_SIZE) throw new ValidationError('frame', `must be at most ${MAX_FRAME_SIZE} bytes`);
  if (message.length < 2) throw new ValidationError('frame', 'is shorter than its header');
  if (message[0] !== FRAME_VERSION) throw new ValidationError('frame.version', `must be ${FRAME_VERSION}`);
  let frame: Frame;
  switch (message[1]) {
    case FrameType.request: {
      const r = new Reader(message, 'request');
      frame = { type: 'request', id: r.id(), ns: r.namespace(), hash: r.hash('hash') };
      r.end();
      break;
    }
    case FrameType.requestFrom: {
      const r = new Reader(message, 'request');
      const id = r.id();
      const from = r.u32('from');
      checkFrom(from);
      frame = { type: 'request-from', id, from, ns: r.namespace(), hash: r.hash('hash') };
      r.end();
      break;
    }
    case FrameType.data: {
      const r = new Reader(message, 'data');
      const id = r.id();
      const offset = r.u32('offset');
      const bytes = r.rest();
      if (bytes.length < 1) throw new ValidationError('data.bytes', 'must not be empty');
      if (offset > MAX_BLOCK_SIZE - bytes.length) throw new ValidationError('data.offset', `chunk ends past ${MAX_BLOCK_SIZE} bytes`);
      frame = { type: 'data', id, offset, bytes };
      break;
    }
    case FrameType.end: {
      const r = new Reader(message, 'end');
      const id = r.id();
      const totalLength = r.u32('totalLength');
      r.end();
      if (totalLength < 1 || totalLength > MAX_BLOCK_SIZE) throw new ValidationError('end.totalLength', `must be from 1 to ${MAX_BLOCK_SIZE}`);
      frame = { type: 'end', id, totalLength };
      break;
    }
    case FrameType.nack: {
      const r = new Reader(message, 'nack');
      const id = r.id();
      const code = r.u8('reason');
      r.end();
      const reason = NACK_REASONS[code - 1];
      if (code < 1 || reason === undefined) throw new ValidationError('nack.reason', 'is not a known reason code');
      frame = { type: 'nack', id, reason };
      break;
    }
    case FrameType.cancel: {
      const r = new Reader(message, 'cancel');
      frame = { type: 'cancel', id: r.id() };
      r.end();
      break;
    }
    case FrameType.have:
    case FrameType.fetching: {
      const r = new Reader(message, 'have');
      const ns = r.namespace();
      const count = r.u16('count');
      if (count < 1 || count > MAX_HAVE_HASHES) throw new ValidationError('have.count', `must be from 1 to ${MAX_HAVE_HASHES}`);
      // Check the length before building any string, so a lying count costs nothing.
      if (r.remaining() !== count * HASH_BYTES) {
        throw new ValidationError('have.hashes', `must be exactly ${count} hashes of ${HASH_BYTES} bytes`);
      }
      const hashes: BlockHash[] = [];
      for (let i = 0; i < count; i++) hashes.push(r.hash(`hashes[${i}]`));
      r.end();
      frame = { type: message[1] === FrameType.have ? 'have' : 'fetching', ns, hashes };
      break;
    }
    default:
      throw new ValidationError('frame.type', 'is not a known frame type');
  }
  return frame;
}
