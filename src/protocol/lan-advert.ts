import { ValidationError } from './errors.ts';
import { MAX_CURSOR } from './limits.ts';

/**
 * The LAN advert datagram (docs/protocol.md, "LAN adverts"): one UDP datagram in which a LAN
 * peer says, for each namespace it syncs, "I hold every block of every live file up to this
 * cursor; fetch from me over TCP at this port". All integers are big-endian.
 *
 *   offset  size  field
 *   0       4     magic "NSLA"
 *   4       1     version (= 1)
 *   5       1     flags (= 0; no flag is defined, any set bit is refused)
 *   6       16    peer id: random, fixed for one run of the sender
 *   22      2     TCP port of the sender's block service (1 … 65535)
 *   24      4     epoch: floor(unix seconds / 30) when sent
 *   28      4     sequence: grows with every datagram of this peer id (1 … 2^32-1)
 *   32      1     count of entries (1 … 32)
 *   33      24×n  entries: tag (16 bytes), cursor (u64, at most 2^53-1)
 *
 * A namespace never appears in clear: its entry carries only a tag, an HMAC keyed by the
 * namespace's LAN key over `advertTagMessage` (every field above but the count and other
 * entries). Computing and checking tags is the job of src/lan/discovery; this module only
 * lays out bytes and refuses any datagram that is not exactly one well-formed advert.
 */

export const LAN_ADVERT_MAGIC = Uint8Array.of(0x4e, 0x53, 0x4c, 0x41); // "NSLA"
export const LAN_ADVERT_VERSION = 1;
export const LAN_ADVERT_HEADER_BYTES = 33;
export const LAN_ADVERT_ENTRY_BYTES = 24;
export const LAN_ADVERT_MAX_ENTRIES = 32;
/** Below the smallest IPv6 path MTU (1,280) with room for headers: never fragmented. */
export const LAN_ADVERT_MAX_BYTES = 1_200;
export const LAN_PEER_ID_BYTES = 16;
export const LAN_ADVERT_TAG_BYTES = 16;
export const LAN_ADVERT_EPOCH_SECONDS = 30;
export const LAN_ADVERT_MAX_SEQUENCE = 0xffff_ffff;
/** Default UDP port of LAN discovery. */
export const LAN_DISCOVERY_PORT = 17600;

export interface LanAdvertEntry {
  tag: Uint8Array;
  cursor: number;
}

export interface LanAdvertDatagram {
  peerId: Uint8Array;
  tcpPort: number;
  epoch: number;
  sequence: number;
  entries: LanAdvertEntry[];
}

export type LanAdvertErrorReason =
  | 'not_bytes'
  | 'oversized'
  | 'truncated'
  | 'magic'
  | 'version'
  | 'flags'
  | 'port'
  | 'sequence'
  | 'count'
  | 'cursor'
  | 'length'
  | 'field';

/** A datagram (or an advert to encode) that breaks the layout; `reason` is the counter to bump. */
export class LanAdvertError extends ValidationError {
  constructor(
    readonly reason: LanAdvertErrorReason,
    field: string,
    message: string,
  ) {
    super(field, message);
  }
}

/** The epoch a clock reading (ms since the Unix epoch) falls in. */
export function lanAdvertEpoch(nowMs: number): number {
  return Math.floor(nowMs / 1000 / LAN_ADVERT_EPOCH_SECONDS);
}

// ---------------------------------------------------------------- encoding

function check(ok: boolean, reason: LanAdvertErrorReason, field: string, message: string): void {
  if (!ok) throw new LanAdvertError(reason, field, message);
}

function checkHeaderFields(advert: Omit<LanAdvertDatagram, 'entries'>): void {
  check(advert.peerId instanceof Uint8Array && advert.peerId.length === LAN_PEER_ID_BYTES, 'field', 'peerId', `must be ${LAN_PEER_ID_BYTES} bytes`);
  check(Number.isInteger(advert.tcpPort) && advert.tcpPort >= 1 && advert.tcpPort <= 0xffff, 'port', 'tcpPort', 'must be 1 to 65535');
  check(Number.isInteger(advert.epoch) && advert.epoch >= 0 && advert.epoch <= 0xffff_ffff, 'field', 'epoch', 'must be a u32');
  check(
    Number.isInteger(advert.sequence) && advert.sequence >= 1 && advert.sequence <= LAN_ADVERT_MAX_SEQUENCE,
    'sequence',
    'sequence',
    `must be 1 to ${LAN_ADVERT_MAX_SEQUENCE}`,
  );
}

function checkCursor(cursor: number, field: string): void {
  check(Number.isSafeInteger(cursor) && cursor >= 0 && cursor <= MAX_CURSOR, 'cursor', field, `must be 0 to ${MAX_CURSOR}`);
}

function writeHeader(bytes: Uint8Array, view: DataView, advert: Omit<LanAdvertDatagram, 'entries'>): void {
  bytes.set(LAN_ADVERT_MAGIC, 0);
  bytes[4] = LAN_ADVERT_VERSION;
  bytes[5] = 0;
  bytes.set(advert.peerId, 6);
  view.setUint16(22, advert.tcpPort);
  view.setUint32(24, advert.epoch);
  view.setUint32(28, advert.sequence);
}

function writeCursor(view: DataView, at: number, cursor: number): void {
  view.setUint32(at, Math.floor(cursor / 2 ** 32));
  view.setUint32(at + 4, cursor >>> 0);
}

/** Encodes one advert; throws LanAdvertError when a field is out of range. */
export function encodeLanAdvert(advert: LanAdvertDatagram): Uint8Array<ArrayBuffer> {
  checkHeaderFields(advert);
  const count = advert.entries.length;
  check(count >= 1 && count <= LAN_ADVERT_MAX_ENTRIES, 'count', 'entries', `must hold 1 to ${LAN_ADVERT_MAX_ENTRIES} entries`);
  const bytes = new Uint8Array(LAN_ADVERT_HEADER_BYTES + count * LAN_ADVERT_ENTRY_BYTES);
  const view = new DataView(bytes.buffer);
  writeHeader(bytes, view, advert);
  bytes[32] = count;
  advert.entries.forEach((entry, i) => {
    const at = LAN_ADVERT_HEADER_BYTES + i * LAN_ADVERT_ENTRY_BYTES;
    check(entry.tag instanceof Uint8Array && entry.tag.length === LAN_ADVERT_TAG_BYTES, 'field', `entries[${i}].tag`, `must be ${LAN_ADVERT_TAG_BYTES} bytes`);
    checkCursor(entry.cursor, `entries[${i}].cursor`);
    bytes.set(entry.tag, at);
    writeCursor(view, at + LAN_ADVERT_TAG_BYTES, entry.cursor);
  });
  return bytes;
}

/**
 * The bytes one entry's tag authenticates: the header as sent (magic through sequence, so
 * no field of it can be altered) followed by the entry's cursor. The count and the other
 * entries are left out, so a sender may list its namespaces in any datagram it likes.
 * The sequence is covered: a listener keeps the highest per peer and namespace, and a
 * stranger must not be able to raise it (which would silence the honest peer).
 */
export function lanAdvertTagMessage(advert: Omit<LanAdvertDatagram, 'entries'>, cursor: number): Uint8Array<ArrayBuffer> {
  checkHeaderFields(advert);
  checkCursor(cursor, 'cursor');
  const bytes = new Uint8Array(32 + 8);
  const view = new DataView(bytes.buffer);
  writeHeader(bytes, view, advert);
  writeCursor(view, 32, cursor);
  return bytes;
}

// ---------------------------------------------------------------- decoding

/**
 * Decodes one datagram. Throws LanAdvertError, and nothing else, for any input that is not
 * exactly one well-formed advert of this version; never reads past the input. The tags and
 * peer id returned are copies, so the receive buffer may be reused.
 */
export function decodeLanAdvert(datagram: Uint8Array): LanAdvertDatagram {
  check(datagram instanceof Uint8Array, 'not_bytes', 'advert', 'must be bytes');
  check(datagram.length <= LAN_ADVERT_MAX_BYTES, 'oversized', 'advert', `must be at most ${LAN_ADVERT_MAX_BYTES} bytes`);
  check(datagram.length >= LAN_ADVERT_MAGIC.length, 'truncated', 'advert', 'is shorter than its magic');
  for (let i = 0; i < LAN_ADVERT_MAGIC.length; i++) check(datagram[i] === LAN_ADVERT_MAGIC[i], 'magic', 'advert.magic', 'must be "NSLA"');
  check(datagram.length >= 5, 'truncated', 'advert.version', 'is missing');
  check(datagram[4] === LAN_ADVERT_VERSION, 'version', 'advert.version', `must be ${LAN_ADVERT_VERSION}`);
  check(datagram.length >= LAN_ADVERT_HEADER_BYTES, 'truncated', 'advert', 'is shorter than its header');
  check(datagram[5] === 0, 'flags', 'advert.flags', 'must be 0');
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  const tcpPort = view.getUint16(22);
  check(tcpPort !== 0, 'port', 'advert.tcpPort', 'must not be 0');
  const sequence = view.getUint32(28);
  check(sequence !== 0, 'sequence', 'advert.sequence', 'must not be 0');
  const count = datagram[32];
  check(count >= 1 && count <= LAN_ADVERT_MAX_ENTRIES, 'count', 'advert.count', `must be 1 to ${LAN_ADVERT_MAX_ENTRIES}`);
  const expected = LAN_ADVERT_HEADER_BYTES + count * LAN_ADVERT_ENTRY_BYTES;
  check(datagram.length >= expected, 'truncated', 'advert.entries', `${count} entries need ${expected} bytes`);
  check(datagram.length === expected, 'length', 'advert', 'has trailing bytes');
  const entries: LanAdvertEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = LAN_ADVERT_HEADER_BYTES + i * LAN_ADVERT_ENTRY_BYTES;
    const high = view.getUint32(at + LAN_ADVERT_TAG_BYTES);
    const low = view.getUint32(at + LAN_ADVERT_TAG_BYTES + 4);
    // 2^53-1 has 21 bits in the high word.
    check(high < 2 ** 21, 'cursor', `advert.entries[${i}].cursor`, `must be at most ${MAX_CURSOR}`);
    entries.push({ tag: datagram.slice(at, at + LAN_ADVERT_TAG_BYTES), cursor: high * 2 ** 32 + low });
  }
  return {
    peerId: datagram.slice(6, 6 + LAN_PEER_ID_BYTES),
    tcpPort,
    epoch: view.getUint32(24),
    sequence,
    entries,
  };
}
