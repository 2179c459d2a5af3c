import { parseBlockHash, type BlockHash } from './block-hash.ts';
import { ValidationError } from './errors.ts';
import { expectArray, expectOnlyKeys, expectRecord, expectString } from './fields.ts';
import { MAX_MISSING_QUERY, MAX_WORKSPACE_NAME_LENGTH } from './limits.ts';

/** Request and response shapes of the HTTP API (docs/protocol.md). */

export type NamespaceId = string & { readonly __brand: 'NamespaceId' };

export interface ApiErrorBody {
  error: string;
  message: string;
}
export interface CreateWorkspaceResponse {
  namespaceId: NamespaceId;
  name: string;
  inviteUrl: string;
  token: string;
}
export interface JoinResponse {
  namespaceId: NamespaceId;
  name: string;
  token: string;
}
export interface InviteResponse {
  inviteUrl: string;
}
export interface CommitResponse {
  sjid: number;
}
export interface NeedBlocksResponse {
  need: BlockHash[];
}
export interface MissingResponse {
  missing: BlockHash[];
}
export interface ServerMetrics {
  blockBytesServed: number;
  blockRequestsServed: number;
  blockBytesReceived: number;
  /** Journal entries appended (each entry of a batch counts). */
  commits: number;
  /** Batch commit requests that committed. */
  commitBatches: number;
  /** Batch block downloads whose whole response was sent. */
  blockBatchesServed: number;
  /** Batch block uploads whose blocks were all stored (or already known). */
  blockBatchesReceived: number;
  journalLongPollsOpen: number;
  /** Relay sockets connected now. */
  relaySockets: number;
  /** Adverts broadcast to a namespace (each counted once, however many members receive it). */
  advertsRelayed: number;
  /** Signals delivered to a peer. */
  signalsRelayed: number;
  /** Block GC passes this instance completed. */
  blockGcPasses: number;
  /** Blocks block GC removed on this instance, and their bytes. */
  blocksCollected: number;
  blockBytesCollected: number;
}

/** GET /api/v1/metrics: the counters, and `lanBridge` when this instance runs the LAN bridge (LAN_BRIDGE=1). */
export type ServerMetricsReport = ServerMetrics & { lanBridge?: LanBridgeMetrics };

/** The LAN bridge of one server instance (counters since start, except the "now" figures). */
export interface LanBridgeMetrics {
  /** LAN peers with a current advert for a namespace of a browser here (now). */
  lanPeers: number;
  /** Namespaces bridged (a browser of each is connected here) now. */
  namespaces: number;
  /** TCP links to LAN peers open now, dialled or accepted. */
  links: number;
  /** Block bytes carried from LAN peers to browsers (bridge-fetch answers). */
  bytesLanToBrowsers: number;
  /** Block bytes carried from browsers to LAN peers (pulled with bridge-read). */
  bytesBrowsersToLan: number;
  /** bridge-fetch answered with a block. */
  fetchesOk: number;
  /** bridge-fetch refused, by code (invalid, forbidden, not_found, busy, unavailable, bad_block). */
  fetchesFailed: Record<string, number>;
  /** Blocks LAN peers asked of the bridge: served, or not found at any browser. */
  lanRequestsServed: number;
  lanRequestsNotFound: number;
  /** bridge-read pulls that failed at one browser, by reason (refused, malformed, timeout, gone, bad_block). */
  browserReadFailures: Record<string, number>;
  /** LAN peers banned for this run (protocol errors, bad blocks). */
  lanPeersBanned: number;
  /** UDP advert datagrams: accepted, or dropped by reason (the listener's counters). */
  udpDatagrams: Record<string, number>;
  /** TCP connections to the bridge's block service refused, by reason. */
  tcpRefused: Record<string, number>;
}

const NAMESPACE_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;
// 128-bit invite = 22 base64url characters; tokens are 256-bit = 43.
const INVITE_PATTERN = /^[A-Za-z0-9_-]{22}$/;
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function parseNamespaceId(value: unknown, field = 'namespaceId'): NamespaceId {
  if (typeof value !== 'string' || !NAMESPACE_PATTERN.test(value)) {
    throw new ValidationError(field, 'must be 16 to 64 characters of [A-Za-z0-9_-]');
  }
  return value as NamespaceId;
}

export function isInviteFormat(value: unknown): value is string {
  return typeof value === 'string' && INVITE_PATTERN.test(value);
}

export function isTokenFormat(value: unknown): value is string {
  return typeof value === 'string' && TOKEN_PATTERN.test(value);
}

export function parseWorkspaceName(value: unknown): string {
  const name = expectString(value, 'name', MAX_WORKSPACE_NAME_LENGTH).normalize('NFC').trim();
  if (name.length === 0) throw new ValidationError('name', 'must not be empty');
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new ValidationError('name', 'must not contain control characters');
  return name;
}

export function parseCreateWorkspaceRequest(value: unknown): { name: string } {
  const record = expectRecord(value, 'body');
  expectOnlyKeys(record, 'body', ['name']);
  return { name: parseWorkspaceName(record.name) };
}

export function parseJoinRequest(value: unknown): { invite: string } {
  const record = expectRecord(value, 'body');
  expectOnlyKeys(record, 'body', ['invite']);
  const invite = expectString(record.invite, 'invite', 64);
  return { invite };
}

export function parseMissingRequest(value: unknown): { hashes: BlockHash[] } {
  const record = expectRecord(value, 'body');
  expectOnlyKeys(record, 'body', ['hashes']);
  const hashes = expectArray(record.hashes, 'hashes', MAX_MISSING_QUERY).map((hash, i) =>
    parseBlockHash(hash, `hashes[${i}]`),
  );
  return { hashes };
}

/** The part of a share link after "#invite=", or null when the link carries none. */
export function inviteFromLink(link: string): string | null {
  const match = /[#&]invite=([A-Za-z0-9_-]{22})(?:&|$)/.exec(link);
  return match ? match[1] : null;
}
