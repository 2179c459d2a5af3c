import { isTokenFormat, parseNamespaceId, type NamespaceId } from './api.ts';
import { ValidationError } from './errors.ts';
import { expectArray, expectInteger, expectOnlyKeys, expectRecord, expectString } from './fields.ts';
import { parseBlockHash, type BlockHash } from './block-hash.ts';
import { parseCursor, type Cursor } from './journal.ts';
import { MAX_BLOCK_SIZE } from './limits.ts';
import { PIECE_SIZE } from './piece-hashes.ts';
import { parseDisplayLabel } from './display-label.ts';

/**
 * The relay's socket.io events (docs/protocol.md, "Relay events"). The server checks what
 * peers send with the *In parsers; a client checks what the relay sends with the *Out ones.
 * Every parser rejects unknown fields and returns a fresh object holding only known ones.
 */

export const RELAY_PATH = '/socket.io';
/** Event names, exactly as on the wire. */
export const RelayEvent = {
  welcome: 'welcome',
  advert: 'advert',
  peers: 'peers',
  signal: 'signal',
  peerLeft: 'peer-left',
  error: 'relay-error',
  bridgeFetch: 'bridge-fetch',
  bridgePiece: 'bridge-piece',
  bridgeRead: 'bridge-read',
} as const;

/** Workspace tokens one socket may present. */
export const MAX_RELAY_TOKENS = 64;
export { MAX_DISPLAY_LABEL_LENGTH as MAX_PEER_LABEL_LENGTH } from './display-label.ts';
export const DEFAULT_PEER_LABEL = 'Browser';
/** A signal's `data` as JSON (UTF-8 bytes), and an SDP inside it. */
export const MAX_SIGNAL_BYTES = 64 * 1024;
export const MAX_SDP_LENGTH = 64 * 1024;
export const MAX_ICE_CANDIDATE_LENGTH = 4096;
/** Adverts in one `peers` list (the most recently heard ones). */
export const MAX_PEERS_LISTED = 1000;
export const MAX_RELAY_ERROR_MESSAGE = 500;
/** A peer re-sends its advert this often; the relay drops an advert unheard for ADVERT_TTL_MS. */
export const ADVERT_INTERVAL_MS = 30_000;
export const ADVERT_TTL_MS = 90_000;
export const MAX_ICE_SERVERS = 16;

/** Relay-assigned peer id: "p_" + 16 base64url characters (96 random bits). */
export type PeerId = string & { readonly __brand: 'PeerId' };

/** The socket.io handshake's `auth` object. */
export interface RelayAuth {
  tokens: string[];
  label: string;
}

/** Relay → peer on connect: who it is and which namespaces its tokens granted. */
export interface Welcome {
  peerId: PeerId;
  namespaces: NamespaceId[];
  /**
   * Set (always `true`) when this relay bridges LAN peers: their adverts (marked `lan`) may
   * follow the first `peers` list by a moment, while the bridge asks the LAN.
   */
  lanBridge?: true;
}

/** Peer → relay: "I hold every block of every live file of `ns` up to journal entry `cursor`." */
export interface AdvertIn {
  ns: NamespaceId;
  cursor: Cursor;
}

/** Relay → the other members of `ns`: a peer download advertisement; `at` is server time (ms). */
export interface AdvertOut {
  peerId: PeerId;
  label: string;
  ns: NamespaceId;
  cursor: Cursor;
  at: number;
  /**
   * Set (always `true`) when the advertiser is a LAN peer behind the server's LAN bridge: its
   * blocks are fetched with `bridge-fetch`, and it is never signalled.
   */
  lan?: true;
}

/** Peer → relay: ask for the current adverts of `ns`. */
export interface PeersIn {
  ns: NamespaceId;
}

/** Relay → peer: the current adverts of `ns`, the receiver's own excluded. */
export interface PeersOut {
  ns: NamespaceId;
  peers: AdvertOut[];
}

export interface IceCandidateData {
  candidate: string;
  sdpMLineIndex?: number | null;
  sdpMid?: string | null;
  usernameFragment?: string | null;
}

export type TransceiverDirection = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

/**
 * A simple-peer signal object (an SDP, an ICE candidate, a renegotiation request), or
 * `{type: 'connect'}`: "please offer to me" from the peer that, by the fixed rule, does not offer.
 */
export type SignalData =
  | { type: 'offer' | 'answer'; sdp: string }
  | { type: 'connect' }
  | { type?: 'candidate'; candidate: IceCandidateData }
  | { type: 'renegotiate'; renegotiate: true }
  | { type: 'transceiverRequest'; transceiverRequest: { kind: 'audio' | 'video'; init?: { direction?: TransceiverDirection } } };

/** Peer → relay: deliver `data` to peer `to`. */
export interface SignalIn {
  to: PeerId;
  data: SignalData;
}

/** Relay → peer: `data` from the authenticated peer `from`; `namespaces` are the ones the two share. */
export interface SignalOut {
  from: PeerId;
  namespaces: NamespaceId[];
  data: SignalData;
}

/** Relay → members of `ns`: the peer's advert for `ns` is gone (disconnected or unheard for too long). */
export interface PeerLeft {
  peerId: PeerId;
  ns: NamespaceId;
}

/**
 * Peer → relay, with an acknowledgement: fetch block `hash` of `ns` from the LAN peer `peerId`
 * (an advert marked `lan`) through the server's bridge. The ack is a BridgeFetchReply.
 */
export interface BridgeFetchIn {
  ns: NamespaceId;
  peerId: PeerId;
  hash: BlockHash;
  /**
   * Present: stream the block (docs/protocol.md "Streamed bridge fetches"). Its pieces come as
   * `bridge-piece` events carrying this id, and the ack is a BridgeStreamReply (the verdict)
   * instead of the block. Unique among this socket's streams in flight.
   */
  stream?: number;
}

/** Stream ids a socket may pick: 1 … 2^31 − 1. */
export const MAX_BRIDGE_STREAM_ID = 2 ** 31 - 1;
/**
 * Pieces of one streamed bridge fetch the bridge sends ahead of the acknowledgements of a
 * socket that did not ask for batches (1 MiB, one piece per event).
 */
export const BRIDGE_PIECE_WINDOW = 16;

/**
 * The socket.io handshake query parameter (`?bridgeBatch=1`) with which a client says it takes
 * `bridge-piece` events of several whole pieces. A query parameter because a relay of an older
 * version ignores it (it validates `auth` and refuses unknown keys there): such a relay keeps
 * sending one piece per event, which a batching client takes as a batch of one.
 */
export const BRIDGE_BATCH_QUERY = 'bridgeBatch';
/** Most bytes one `bridge-piece` carries to a socket that asked for batches (16 pieces). */
export const MAX_BRIDGE_BATCH_BYTES = 16 * PIECE_SIZE;
/** Bytes of one streamed fetch the bridge sends ahead of the acknowledgements of a batching socket. */
export const BRIDGE_BATCH_WINDOW_BYTES = 2 * MAX_BRIDGE_BATCH_BYTES;

/**
 * Relay → peer, with an acknowledgement: pieces `offset / PIECE_SIZE` onwards of streamed
 * fetch `stream`, in order: one piece, or (to a socket that asked with BRIDGE_BATCH_QUERY)
 * several whole pieces back to back, at most MAX_BRIDGE_BATCH_BYTES. Every piece is
 * PIECE_SIZE bytes but the block's last, so `data` is a multiple of PIECE_SIZE unless it ends
 * the block. Unverified until the fetch's verdict (the ack of its `bridge-fetch`) says the
 * whole block matched.
 */
export interface BridgePieceOut {
  stream: number;
  offset: number;
  data: Uint8Array;
}

/** The peer's ack of a `bridge-piece`: `true` for more, `false` to stop the stream (it gave up). */
export interface BridgePieceAck {
  ok: boolean;
}

export const BRIDGE_ERROR_CODES = ['invalid', 'forbidden', 'not_found', 'busy', 'unavailable', 'bad_block'] as const;
export type BridgeErrorCode = (typeof BRIDGE_ERROR_CODES)[number];

export interface BridgeFailure {
  ok: false;
  code: BridgeErrorCode;
  message: string;
}

/** The ack of `bridge-fetch`: the block's bytes (hash checked by the bridge, and again by the peer), or why not. */
export type BridgeFetchReply = { ok: true; data: Uint8Array } | BridgeFailure;

/**
 * The ack of a streamed `bridge-fetch`, sent once every piece was acknowledged: `size` bytes
 * came as pieces and the whole block hashed to its name at the bridge; or why not (then the
 * pieces already received are to be thrown away).
 */
export type BridgeStreamReply = { ok: true; size: number } | BridgeFailure;

/**
 * Relay → peer, with an acknowledgement: the bridge reads part of block `hash` of `ns` for a
 * LAN peer that asked it. The ack is a BridgeReadReply; a peer answers only for blocks of live
 * files of `ns` it holds.
 */
export interface BridgeReadOut {
  ns: NamespaceId;
  hash: BlockHash;
  offset: number;
  length: number;
}

/** The ack of `bridge-read`: `length` bytes from `offset` (fewer at the block's end) and the block's size. */
export type BridgeReadReply = { ok: true; data: Uint8Array; size: number } | BridgeFailure;

/** Blocks one socket may be fetching through the bridge at once (more are answered `busy`). */
export const MAX_BRIDGE_FETCHES_PER_SOCKET = 8;
/** The most one `bridge-read` asks for: the reply stays under the relay's 128 KiB message limit (the bridge keeps several in flight). */
export const MAX_BRIDGE_READ_BYTES = 64 * 1024;

export const RELAY_ERROR_CODES = ['invalid', 'unknown_event', 'forbidden', 'no_shared_namespace', 'rate_limited', 'too_many_errors', 'unavailable'] as const;
export type RelayErrorCode = (typeof RELAY_ERROR_CODES)[number];

/** Relay → peer: an event was refused (and dropped). */
export interface RelayError {
  code: RelayErrorCode;
  message: string;
}

/** One RTCIceServer as GET /api/v1/config hands it out. */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** GET /api/v1/config */
export interface ClientConfig {
  iceServers: IceServer[];
}

const PEER_ID_PATTERN = /^p_[A-Za-z0-9_-]{16}$/;
const MAX_TIMESTAMP_MS = 10_000_000_000_000;
const ICE_URL_PATTERN = /^(stun|stuns|turn|turns):[^\s]+$/;

export function parsePeerId(value: unknown, field = 'peerId'): PeerId {
  if (typeof value !== 'string' || !PEER_ID_PATTERN.test(value)) {
    throw new ValidationError(field, 'must be "p_" followed by 16 characters of [A-Za-z0-9_-]');
  }
  return value as PeerId;
}

/** A display name: NFC, trimmed, 1 to 40 characters, no control or bidi-control characters. */
export function parsePeerLabel(value: unknown, field = 'label'): string {
  return parseDisplayLabel(value, field);
}

/**
 * The handshake `auth`: `{tokens: [token, …], label?}`. Tokens are checked for format only
 * (the server looks them up) and deduplicated; a missing or blank label becomes "Browser".
 */
export function parseRelayAuth(value: unknown): RelayAuth {
  const record = expectRecord(value, 'auth');
  expectOnlyKeys(record, 'auth', ['tokens', 'label']);
  const list = expectArray(record.tokens, 'auth.tokens', MAX_RELAY_TOKENS);
  if (list.length === 0) throw new ValidationError('auth.tokens', 'must hold at least one token');
  const tokens = list.map((token, i) => {
    if (!isTokenFormat(token)) throw new ValidationError(`auth.tokens[${i}]`, 'must be a member token (43 characters of [A-Za-z0-9_-])');
    return token;
  });
  const blank = record.label === undefined || (typeof record.label === 'string' && record.label.trim() === '');
  const label = blank ? DEFAULT_PEER_LABEL : parsePeerLabel(record.label, 'auth.label');
  return { tokens: [...new Set(tokens)], label };
}

function parseNamespaceList(value: unknown, field: string): NamespaceId[] {
  const list = expectArray(value, field, MAX_RELAY_TOKENS);
  if (list.length === 0) throw new ValidationError(field, 'must not be empty');
  const namespaces = list.map((ns, i) => parseNamespaceId(ns, `${field}[${i}]`));
  if (new Set(namespaces).size !== namespaces.length) throw new ValidationError(field, 'must not repeat a namespace');
  return namespaces;
}

export function parseWelcome(value: unknown): Welcome {
  const record = expectRecord(value, 'welcome');
  expectOnlyKeys(record, 'welcome', ['peerId', 'namespaces', 'lanBridge']);
  const welcome: Welcome = {
    peerId: parsePeerId(record.peerId, 'welcome.peerId'),
    namespaces: parseNamespaceList(record.namespaces, 'welcome.namespaces'),
  };
  if (record.lanBridge !== undefined) {
    if (record.lanBridge !== true) throw new ValidationError('welcome.lanBridge', 'must be true when present');
    welcome.lanBridge = true;
  }
  return welcome;
}

export function parseAdvertIn(value: unknown): AdvertIn {
  const record = expectRecord(value, 'advert');
  expectOnlyKeys(record, 'advert', ['ns', 'cursor']);
  return { ns: parseNamespaceId(record.ns, 'advert.ns'), cursor: parseCursor(record.cursor, 'advert.cursor') };
}

export function parseAdvertOut(value: unknown, field = 'advert'): AdvertOut {
  const record = expectRecord(value, field);
  expectOnlyKeys(record, field, ['peerId', 'label', 'ns', 'cursor', 'at', 'lan']);
  const advert: AdvertOut = {
    peerId: parsePeerId(record.peerId, `${field}.peerId`),
    label: parsePeerLabel(record.label, `${field}.label`),
    ns: parseNamespaceId(record.ns, `${field}.ns`),
    cursor: parseCursor(record.cursor, `${field}.cursor`),
    at: expectInteger(record.at, `${field}.at`, 0, MAX_TIMESTAMP_MS),
  };
  if (record.lan !== undefined) {
    if (record.lan !== true) throw new ValidationError(`${field}.lan`, 'must be true when present');
    advert.lan = true;
  }
  return advert;
}

export function parseBridgeFetchIn(value: unknown): BridgeFetchIn {
  const record = expectRecord(value, 'bridge-fetch');
  expectOnlyKeys(record, 'bridge-fetch', ['ns', 'peerId', 'hash', 'stream']);
  const request: BridgeFetchIn = {
    ns: parseNamespaceId(record.ns, 'bridge-fetch.ns'),
    peerId: parsePeerId(record.peerId, 'bridge-fetch.peerId'),
    hash: parseBlockHash(record.hash, 'bridge-fetch.hash'),
  };
  if (record.stream !== undefined) request.stream = expectInteger(record.stream, 'bridge-fetch.stream', 1, MAX_BRIDGE_STREAM_ID);
  return request;
}

/**
 * A `bridge-piece` as received: a known field set, an id in range, an offset on a piece
 * boundary and 1 … `maxBytes` bytes within the largest block (PIECE_SIZE for a client that
 * did not ask for batches). Whether it is what the stream expects next is the receiver's check.
 */
export function parseBridgePieceOut(value: unknown, maxBytes = MAX_BRIDGE_BATCH_BYTES): BridgePieceOut {
  const field = 'bridge-piece';
  const record = expectRecord(value, field);
  expectOnlyKeys(record, field, ['stream', 'offset', 'data']);
  const stream = expectInteger(record.stream, `${field}.stream`, 1, MAX_BRIDGE_STREAM_ID);
  const offset = expectInteger(record.offset, `${field}.offset`, 0, MAX_BLOCK_SIZE - 1);
  if (offset % PIECE_SIZE !== 0) throw new ValidationError(`${field}.offset`, `must be a multiple of ${PIECE_SIZE}`);
  const data = parseBinary(record.data, `${field}.data`, maxBytes);
  if (data.byteLength === 0) throw new ValidationError(`${field}.data`, 'must not be empty');
  if (offset + data.byteLength > MAX_BLOCK_SIZE) throw new ValidationError(`${field}.data`, 'must end within the largest block');
  return { stream, offset, data };
}

/** The peer's ack of a `bridge-piece`, as the bridge receives it. */
export function parseBridgePieceAck(value: unknown): BridgePieceAck {
  const record = expectRecord(value, 'bridge-piece ack');
  expectOnlyKeys(record, 'bridge-piece ack', ['ok']);
  return { ok: expectOk(record, 'bridge-piece ack') };
}

export function parseBridgeReadOut(value: unknown): BridgeReadOut {
  const record = expectRecord(value, 'bridge-read');
  expectOnlyKeys(record, 'bridge-read', ['ns', 'hash', 'offset', 'length']);
  return {
    ns: parseNamespaceId(record.ns, 'bridge-read.ns'),
    hash: parseBlockHash(record.hash, 'bridge-read.hash'),
    offset: expectInteger(record.offset, 'bridge-read.offset', 0, MAX_BLOCK_SIZE - 1),
    length: expectInteger(record.length, 'bridge-read.length', 1, MAX_BRIDGE_READ_BYTES),
  };
}

/** socket.io hands binary over as a Buffer in Node and an ArrayBuffer in a browser. */
function parseBinary(value: unknown, field: string, maxBytes: number): Uint8Array {
  let bytes: Uint8Array;
  if (value instanceof ArrayBuffer) bytes = new Uint8Array(value);
  else if (ArrayBuffer.isView(value)) bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  else throw new ValidationError(field, 'must be binary');
  if (bytes.byteLength > maxBytes) throw new ValidationError(field, `must be at most ${maxBytes} bytes`);
  return bytes;
}

function parseBridgeFailure(record: Record<string, unknown>, field: string): BridgeFailure {
  expectOnlyKeys(record, field, ['ok', 'code', 'message']);
  if (!(BRIDGE_ERROR_CODES as readonly unknown[]).includes(record.code)) {
    throw new ValidationError(`${field}.code`, `must be one of ${BRIDGE_ERROR_CODES.join(', ')}`);
  }
  return { ok: false, code: record.code as BridgeErrorCode, message: expectString(record.message, `${field}.message`, MAX_RELAY_ERROR_MESSAGE) };
}

function expectOk(record: Record<string, unknown>, field: string): boolean {
  if (typeof record.ok !== 'boolean') throw new ValidationError(`${field}.ok`, 'must be true or false');
  return record.ok;
}

export function parseBridgeFetchReply(value: unknown): BridgeFetchReply {
  const field = 'bridge-fetch reply';
  const record = expectRecord(value, field);
  if (!expectOk(record, field)) return parseBridgeFailure(record, field);
  expectOnlyKeys(record, field, ['ok', 'data']);
  return { ok: true, data: parseBinary(record.data, `${field}.data`, MAX_BLOCK_SIZE) };
}

export function parseBridgeStreamReply(value: unknown): BridgeStreamReply {
  const field = 'bridge-fetch reply';
  const record = expectRecord(value, field);
  if (!expectOk(record, field)) return parseBridgeFailure(record, field);
  expectOnlyKeys(record, field, ['ok', 'size']);
  return { ok: true, size: expectInteger(record.size, `${field}.size`, 1, MAX_BLOCK_SIZE) };
}

export function parseBridgeReadReply(value: unknown, asked: BridgeReadOut): BridgeReadReply {
  const field = 'bridge-read reply';
  const record = expectRecord(value, field);
  if (!expectOk(record, field)) return parseBridgeFailure(record, field);
  expectOnlyKeys(record, field, ['ok', 'data', 'size']);
  const size = expectInteger(record.size, `${field}.size`, 1, MAX_BLOCK_SIZE);
  const data = parseBinary(record.data, `${field}.data`, asked.length);
  if (asked.offset >= size) throw new ValidationError(`${field}.size`, 'must be past the offset asked for');
  if (data.byteLength !== Math.min(asked.length, size - asked.offset)) {
    throw new ValidationError(`${field}.data`, 'must hold the bytes asked for, fewer only at the end of the block');
  }
  return { ok: true, data, size };
}

export function parsePeersIn(value: unknown): PeersIn {
  const record = expectRecord(value, 'peers');
  expectOnlyKeys(record, 'peers', ['ns']);
  return { ns: parseNamespaceId(record.ns, 'peers.ns') };
}

/** A peers list: every advert of the list's namespace, each peer once. */
export function parsePeersOut(value: unknown): PeersOut {
  const record = expectRecord(value, 'peers');
  expectOnlyKeys(record, 'peers', ['ns', 'peers']);
  const ns = parseNamespaceId(record.ns, 'peers.ns');
  const seen = new Set<string>();
  const peers = expectArray(record.peers, 'peers.peers', MAX_PEERS_LISTED).map((item, i) => {
    const advert = parseAdvertOut(item, `peers.peers[${i}]`);
    if (advert.ns !== ns) throw new ValidationError(`peers.peers[${i}].ns`, 'must be the namespace of the list');
    if (seen.has(advert.peerId)) throw new ValidationError(`peers.peers[${i}].peerId`, 'must not repeat a peer');
    seen.add(advert.peerId);
    return advert;
  });
  return { ns, peers };
}

function parseNullableString(value: unknown, field: string, maxLength: number): string | null | undefined {
  if (value === undefined || value === null) return value;
  return expectString(value, field, maxLength);
}

function parseCandidate(value: unknown, field: string): IceCandidateData {
  const record = expectRecord(value, field);
  expectOnlyKeys(record, field, ['candidate', 'sdpMLineIndex', 'sdpMid', 'usernameFragment']);
  // An empty candidate string is the end-of-candidates marker.
  const candidate: IceCandidateData = { candidate: expectString(record.candidate, `${field}.candidate`, MAX_ICE_CANDIDATE_LENGTH) };
  if (record.sdpMLineIndex !== undefined) {
    candidate.sdpMLineIndex = record.sdpMLineIndex === null ? null : expectInteger(record.sdpMLineIndex, `${field}.sdpMLineIndex`, 0, 65_535);
  }
  const sdpMid = parseNullableString(record.sdpMid, `${field}.sdpMid`, 256);
  if (sdpMid !== undefined) candidate.sdpMid = sdpMid;
  const ufrag = parseNullableString(record.usernameFragment, `${field}.usernameFragment`, 256);
  if (ufrag !== undefined) candidate.usernameFragment = ufrag;
  return candidate;
}

function utf8Length(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** A signal object (see SignalData), rebuilt from its known fields; at most 64 KiB as JSON. */
export function parseSignalData(value: unknown, field = 'data'): SignalData {
  const record = expectRecord(value, field);
  const type = record.type;
  let data: SignalData;
  if (type === 'offer' || type === 'answer') {
    expectOnlyKeys(record, field, ['type', 'sdp']);
    const sdp = expectString(record.sdp, `${field}.sdp`, MAX_SDP_LENGTH);
    if (sdp.length === 0) throw new ValidationError(`${field}.sdp`, 'must not be empty');
    data = { type, sdp };
  } else if (type === 'candidate' || (type === undefined && record.candidate !== undefined)) {
    expectOnlyKeys(record, field, ['type', 'candidate']);
    const candidate = parseCandidate(record.candidate, `${field}.candidate`);
    data = type === undefined ? { candidate } : { type, candidate };
  } else if (type === 'connect') {
    expectOnlyKeys(record, field, ['type']);
    data = { type };
  } else if (type === 'renegotiate') {
    expectOnlyKeys(record, field, ['type', 'renegotiate']);
    if (record.renegotiate !== true) throw new ValidationError(`${field}.renegotiate`, 'must be true');
    data = { type, renegotiate: true };
  } else if (type === 'transceiverRequest') {
    expectOnlyKeys(record, field, ['type', 'transceiverRequest']);
    const request = expectRecord(record.transceiverRequest, `${field}.transceiverRequest`);
    expectOnlyKeys(request, `${field}.transceiverRequest`, ['kind', 'init']);
    if (request.kind !== 'audio' && request.kind !== 'video') {
      throw new ValidationError(`${field}.transceiverRequest.kind`, 'must be "audio" or "video"');
    }
    const out: { kind: 'audio' | 'video'; init?: { direction?: TransceiverDirection } } = { kind: request.kind };
    if (request.init !== undefined) {
      const init = expectRecord(request.init, `${field}.transceiverRequest.init`);
      expectOnlyKeys(init, `${field}.transceiverRequest.init`, ['direction']);
      out.init = {};
      if (init.direction !== undefined) {
        if (!['sendrecv', 'sendonly', 'recvonly', 'inactive'].includes(init.direction as string)) {
          throw new ValidationError(`${field}.transceiverRequest.init.direction`, 'must be sendrecv, sendonly, recvonly or inactive');
        }
        out.init.direction = init.direction as TransceiverDirection;
      }
    }
    data = { type, transceiverRequest: out };
  } else {
    throw new ValidationError(`${field}.type`, 'must be offer, answer, candidate, connect, renegotiate or transceiverRequest');
  }
  if (utf8Length(JSON.stringify(data)) > MAX_SIGNAL_BYTES) {
    throw new ValidationError(field, `must be at most ${MAX_SIGNAL_BYTES} bytes as JSON`);
  }
  return data;
}

export function parseSignalIn(value: unknown): SignalIn {
  const record = expectRecord(value, 'signal');
  expectOnlyKeys(record, 'signal', ['to', 'data']);
  return { to: parsePeerId(record.to, 'signal.to'), data: parseSignalData(record.data, 'signal.data') };
}

export function parseSignalOut(value: unknown): SignalOut {
  const record = expectRecord(value, 'signal');
  expectOnlyKeys(record, 'signal', ['from', 'namespaces', 'data']);
  return {
    from: parsePeerId(record.from, 'signal.from'),
    namespaces: parseNamespaceList(record.namespaces, 'signal.namespaces'),
    data: parseSignalData(record.data, 'signal.data'),
  };
}

export function parsePeerLeft(value: unknown): PeerLeft {
  const record = expectRecord(value, 'peer-left');
  expectOnlyKeys(record, 'peer-left', ['peerId', 'ns']);
  return { peerId: parsePeerId(record.peerId, 'peer-left.peerId'), ns: parseNamespaceId(record.ns, 'peer-left.ns') };
}

export function parseRelayError(value: unknown): RelayError {
  const record = expectRecord(value, 'relay-error');
  expectOnlyKeys(record, 'relay-error', ['code', 'message']);
  if (!(RELAY_ERROR_CODES as readonly unknown[]).includes(record.code)) {
    throw new ValidationError('relay-error.code', `must be one of ${RELAY_ERROR_CODES.join(', ')}`);
  }
  return { code: record.code as RelayErrorCode, message: expectString(record.message, 'relay-error.message', MAX_RELAY_ERROR_MESSAGE) };
}

function parseIceServer(value: unknown, field: string): IceServer {
  const record = expectRecord(value, field);
  expectOnlyKeys(record, field, ['urls', 'username', 'credential']);
  const parseUrl = (url: unknown, at: string): string => {
    const text = expectString(url, at, 512);
    if (!ICE_URL_PATTERN.test(text)) throw new ValidationError(at, 'must be a stun:, stuns:, turn: or turns: URL');
    return text;
  };
  let urls: string | string[];
  if (Array.isArray(record.urls)) {
    const list = expectArray(record.urls, `${field}.urls`, 16);
    if (list.length === 0) throw new ValidationError(`${field}.urls`, 'must not be empty');
    urls = list.map((url, i) => parseUrl(url, `${field}.urls[${i}]`));
  } else {
    urls = parseUrl(record.urls, `${field}.urls`);
  }
  const server: IceServer = { urls };
  if (record.username !== undefined) server.username = expectString(record.username, `${field}.username`, 256);
  if (record.credential !== undefined) server.credential = expectString(record.credential, `${field}.credential`, 256);
  return server;
}

/** A list of RTCIceServer-like objects: `{urls, username?, credential?}`, at most 16. */
export function parseIceServers(value: unknown, field = 'iceServers'): IceServer[] {
  return expectArray(value, field, MAX_ICE_SERVERS).map((server, i) => parseIceServer(server, `${field}[${i}]`));
}

export function parseClientConfig(value: unknown): ClientConfig {
  const record = expectRecord(value, 'config');
  expectOnlyKeys(record, 'config', ['iceServers']);
  return { iceServers: parseIceServers(record.iceServers, 'config.iceServers') };
}
