import {
  BlockRecordReader,
  encodeBlockUploadParts,
  MAX_BLOCK_SIZE,
  ValidationError,
  expectArray,
  expectRecord,
  expectString,
  lanKeyBytes,
  parseBlockHash,
  parseConflictCurrent,
  parseDeviceLabel,
  parseHistoryResponse,
  parseDeletedFilesResponse,
  type DeletedFilesResponse,
  parseBlockUploadBatchResponse,
  parseCommitBatchResponse,
  parseCursor,
  parseJournalPage,
  parsePieceHashResponse,
  type BlockPieces,
  parseLanKeyResponse,
  parseNamespaceId,
  type BlockHash,
  type BlockUpload,
  type BlockUploadBatchResponse,
  type CommitRequest,
  type Cursor,
  type FilePath,
  type HistoryResponse,
  type JournalPage,
  type NamespaceId,
} from '../protocol/index.ts';
import { POOLED_BLOCK_MIN, readBodyInto, type BlockBufferPool } from './block-buffers.ts';
import { CommitConflictError } from './commit-conflict.ts';
import type { JournalClient, JournalReadOptions, UploadApi } from './types.ts';

/** An HTTP answer other than success, with the server's error code when it sent one. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The error body's other fields (unvalidated: whoever reads one checks it). */
    readonly details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
  }
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/**
 * Client of the nearsync HTTP API (docs/protocol.md). Every response body is validated
 * before it is believed.
 */
export class ServerApi implements UploadApi {
  /** Set once the server answered that it has no batch upload route (a server older than it). */
  private batchUploadUnsupported = false;
  private unnamedUploadUnsupported = false;
  /**
   * Set once the server refused `parent` or `device` as unknown fields (a server from before
   * conditional commits): commits then go without them, unconditional, as that server expects.
   */
  private conditionalCommitsUnsupported = false;
  /** This device's label, sent with every commit (the server shows it in version history). */
  readonly device: string | null;

  constructor(
    readonly base: string,
    private readonly token: string | null = null,
    private readonly fetchImpl: FetchLike = (input, init) => fetch(input, init),
    device: string | null = null,
  ) {
    this.device = device === null ? null : parseDeviceLabel(device);
  }

  withToken(token: string): ServerApi {
    return new ServerApi(this.base, token, this.fetchImpl, this.device);
  }

  async createWorkspace(name: string): Promise<{ namespaceId: NamespaceId; name: string; inviteUrl: string; token: string }> {
    const body = expectRecord(await this.json('POST', '/api/v1/workspaces', { name }), 'response');
    return {
      namespaceId: parseNamespaceId(body.namespaceId),
      name: expectString(body.name, 'name', 1000),
      inviteUrl: expectString(body.inviteUrl, 'inviteUrl', 2000),
      token: expectString(body.token, 'token', 200),
    };
  }

  async join(invite: string): Promise<{ namespaceId: NamespaceId; name: string; token: string }> {
    const body = expectRecord(await this.json('POST', '/api/v1/join', { invite }), 'response');
    return {
      namespaceId: parseNamespaceId(body.namespaceId),
      name: expectString(body.name, 'name', 1000),
      token: expectString(body.token, 'token', 200),
    };
  }

  async rotateInvite(ns: NamespaceId): Promise<string> {
    const body = expectRecord(await this.json('POST', `/api/v1/ns/${ns}/invite`, {}), 'response');
    return expectString(body.inviteUrl, 'inviteUrl', 2000);
  }

  /** The namespace's LAN key (members only): the secret behind LAN advert tags and the LAN TCP pre-shared key. */
  async lanKey(ns: NamespaceId): Promise<Uint8Array> {
    return lanKeyBytes(parseLanKeyResponse(await this.json('GET', `/api/v1/ns/${ns}/lan-key`)));
  }

  journal(ns: NamespaceId): JournalClient {
    return {
      readPage: (cursor, options) => this.readJournal(ns, cursor, options),
    };
  }

  async readJournal(ns: NamespaceId, cursor: Cursor, options: JournalReadOptions = {}): Promise<JournalPage> {
    const query = new URLSearchParams({ cursor: String(parseCursor(cursor)) });
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.waitSeconds) query.set('wait', String(options.waitSeconds));
    const body = await this.json('GET', `/api/v1/ns/${ns}/journal?${query}`, undefined, options.signal);
    return parseJournalPage(body, cursor);
  }

  async missingBlocks(hashes: BlockHash[]): Promise<BlockHash[]> {
    if (hashes.length === 0) return [];
    const body = expectRecord(await this.json('POST', '/api/v1/blocks/missing', { hashes }), 'response');
    const asked = new Set(hashes);
    return expectArray(body.missing, 'missing', hashes.length).map((hash, i) => {
      const parsed = parseBlockHash(hash, `missing[${i}]`);
      if (!asked.has(parsed)) throw new ValidationError(`missing[${i}]`, 'names a block that was not asked about');
      return parsed;
    });
  }

  async putBlock(hash: BlockHash, body: Uint8Array | Blob): Promise<void> {
    const response = await this.request('PUT', `/api/v1/blocks/${hash}`, {
      // A Blob body, not the bytes: Chromium uploads an ArrayBuffer body about 8x slower
      // (measured: 25 vs 220 MB/s on loopback), and Node accepts either. A Blob made here
      // from bytes stays in Chromium's browser process until garbage collected, so the
      // browser passes the stored block's disk-backed File instead (upload-queue.ts).
      body: body instanceof Blob ? body : new Blob([body as Uint8Array<ArrayBuffer>]),
      headers: { 'content-type': 'application/octet-stream' },
    });
    await response.body?.cancel();
  }

  /**
   * A block the caller has not hashed (POST /api/v1/blocks): the server names it by its
   * SHA-256, checked here for form and against the size sent. Null when the server has no such
   * route (it answers 404 or 405): from then on this ServerApi answers null at once, and the
   * caller hashes and sends blocks by name (putBlock).
   */
  async putUnnamedBlock(body: Blob): Promise<BlockHash | null> {
    if (this.unnamedUploadUnsupported) return null;
    let response: Response;
    try {
      response = await this.request('POST', '/api/v1/blocks', { body, headers: { 'content-type': 'application/octet-stream' } });
    } catch (error) {
      if (!(error instanceof ApiError && (error.status === 404 || error.status === 405))) throw error;
      this.unnamedUploadUnsupported = true;
      return null;
    }
    const answer = expectRecord(await response.json(), 'response');
    const hash = parseBlockHash(answer.hash, 'hash');
    if (answer.size !== body.size) throw new Error(`the server stored ${String(answer.size)} bytes of a ${body.size}-byte block`);
    return hash;
  }

  /**
   * Many blocks in one request (POST /api/v1/blocks/batch, docs/protocol.md "Batch block
   * upload"): the server verifies them all and stores them together, or refuses the batch
   * whole. Resolves with its counts, or null when the server has no batch upload route (it
   * answers 404 or 405): from then on this ServerApi answers null at once, and the caller
   * sends blocks one by one (putBlock).
   */
  async putBlocks(blocks: readonly BlockUpload[]): Promise<BlockUploadBatchResponse | null> {
    if (this.batchUploadUnsupported) return null;
    if (blocks.length === 0) return { created: 0, existing: 0 };
    let response: Response;
    try {
      response = await this.request('POST', '/api/v1/blocks/batch', {
        // A Blob of the parts, as putBlock sends a Blob (Chromium uploads them much faster).
        body: new Blob(encodeBlockUploadParts(blocks)),
        headers: { 'content-type': 'application/octet-stream' },
      });
    } catch (error) {
      if (!(error instanceof ApiError && (error.status === 404 || error.status === 405))) throw error;
      this.batchUploadUnsupported = true;
      return null;
    }
    return parseBlockUploadBatchResponse(await response.json(), blocks.length);
  }

  /**
   * `{sjid}`, or `{need}` naming the blocks the server lacks (nothing committed). A commit
   * with a `parent` that is no longer the path's live entry rejects with CommitConflictError.
   */
  async commit(ns: NamespaceId, request: CommitRequest): Promise<{ sjid: number } | { need: BlockHash[] }> {
    return this.withConditionalFallback(async () => {
      try {
        const body = expectRecord(await this.json('POST', `/api/v1/ns/${ns}/commit`, this.commitBody(request)), 'response');
        return { sjid: parseCursor(body.sjid, 'sjid') };
      } catch (error) {
        if (error instanceof NeedBlocksError) return { need: error.need };
        throw conflictOf(error, [request]);
      }
    });
  }

  /**
   * Commits 1 … 1000 entries in one transaction (POST /ns/:ns/commits): their sjids, in
   * order, or `{need}` listing every block the server lacks (nothing committed). An element
   * whose `parent` is not live rejects the batch with CommitConflictError naming its index.
   */
  async commitBatch(ns: NamespaceId, requests: readonly CommitRequest[]): Promise<{ sjids: number[] } | { need: BlockHash[] }> {
    return this.withConditionalFallback(async () => {
      const commits = requests.map((request) => this.commitBody(request));
      try {
        return parseCommitBatchResponse(await this.json('POST', `/api/v1/ns/${ns}/commits`, { commits }), requests.length);
      } catch (error) {
        if (error instanceof NeedBlocksError) return { need: error.need };
        throw conflictOf(error, requests);
      }
    });
  }

  /**
   * The versions of one path, newest first, deletions included (GET /ns/:ns/history);
   * `before` pages back past the last version of a previous answer.
   */
  async history(ns: NamespaceId, path: FilePath, options: { limit?: number; before?: number; signal?: AbortSignal } = {}): Promise<HistoryResponse> {
    const query = new URLSearchParams({ path });
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.before !== undefined) query.set('before', String(parseCursor(options.before, 'before')));
    const body = await this.json('GET', `/api/v1/ns/${ns}/history?${query}`, undefined, options.signal);
    return parseHistoryResponse(body, path, options.before ?? null);
  }

  /**
   * Recently deleted files, newest deletion first (GET /ns/:ns/deleted); `before` pages back
   * past the last deletion of a previous answer.
   */
  async deletedFiles(ns: NamespaceId, options: { limit?: number; before?: number; signal?: AbortSignal } = {}): Promise<DeletedFilesResponse> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.before !== undefined) query.set('before', String(parseCursor(options.before, 'before')));
    const body = await this.json('GET', `/api/v1/ns/${ns}/deleted${query.size > 0 ? `?${query}` : ''}`, undefined, options.signal);
    return parseDeletedFilesResponse(body, options.before ?? null);
  }

  /** Only the commit's own fields (callers often hold a FileRecord with more on it), and this device's label. */
  private commitBody(request: CommitRequest): Record<string, unknown> {
    const { path, size, mtime, blocks, deleted, parent } = request;
    const body: Record<string, unknown> = { path, size, mtime, blocks, deleted };
    if (this.conditionalCommitsUnsupported) return body;
    if (parent !== undefined) body.parent = parent;
    const device = request.device ?? this.device;
    if (device !== null) body.device = device;
    return body;
  }

  /** Runs a commit; when the server does not know `parent`/`device` yet, remembers that and runs it again without them. */
  private async withConditionalFallback<T>(send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (error) {
      if (this.conditionalCommitsUnsupported || !refusesConditionalFields(error)) throw error;
      this.conditionalCommitsUnsupported = true;
      return send();
    }
  }

  /**
   * Many blocks in one request (POST /ns/:ns/blocks), read as they stream in. The map holds
   * the blocks the server sent (unverified: the caller checks each hash); a hash it refused,
   * or left out to keep the response small, is absent: ask again, or elsewhere. A stream
   * that breaks the record format throws ValidationError.
   */
  async getBlocks(ns: NamespaceId, hashes: readonly BlockHash[], signal?: AbortSignal): Promise<Map<BlockHash, Uint8Array>> {
    const blocks = new Map<BlockHash, Uint8Array>();
    if (hashes.length === 0) return blocks;
    const response = await this.request('POST', `/api/v1/ns/${ns}/blocks`, {
      body: JSON.stringify({ hashes }),
      headers: { 'content-type': 'application/json' },
      signal,
    });
    const reader = new BlockRecordReader(hashes);
    if (!response.body) throw new ValidationError('blocks', 'the response has no body');
    const body = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await body.read();
        if (done) break;
        for (const record of reader.push(value)) if (record.bytes) blocks.set(record.hash, record.bytes);
      }
      reader.end();
    } catch (error) {
      await body.cancel().catch(() => {});
      throw error;
    }
    return blocks;
  }

  /**
   * The server's piece hashes of blocks `ns` references (POST /ns/:ns/pieces), validated
   * against the request; a block the server would not describe is absent from the map.
   */
  async pieceHashes(ns: NamespaceId, hashes: readonly BlockHash[], signal?: AbortSignal): Promise<Map<BlockHash, BlockPieces>> {
    if (hashes.length === 0) return new Map();
    return parsePieceHashResponse(await this.json('POST', `/api/v1/ns/${ns}/pieces`, { hashes }, signal), hashes);
  }

  /**
   * One block's bytes, refusing bodies over the block limit before reading them whole. With
   * a pool, a block of at least POOLED_BLOCK_MIN bytes is read into one of its buffers (hand
   * it back with `pool.give` once the bytes are no longer needed).
   */
  async getBlock(ns: NamespaceId, hash: BlockHash, signal?: AbortSignal, pool?: BlockBufferPool): Promise<Uint8Array> {
    // no-store: the block is kept by the caller; the server marks blocks cacheable for a
    // year, and a browser would also write every block into its HTTP disk cache (measured:
    // 1.2 GiB of cache beside a 1.1 GiB file), costing disk and write time for nothing.
    const response = await this.request('GET', `/api/v1/blocks/${hash}?ns=${encodeURIComponent(ns)}`, { signal, cache: 'no-store' });
    return readBoundedBody(response, MAX_BLOCK_SIZE, pool);
  }

  private async json(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<unknown> {
    const init: RequestInit = { signal };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'content-type': 'application/json' };
    }
    const response = await this.request(method, path, init);
    return response.json();
  }

  private async request(method: string, path: string, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.token) headers.set('authorization', `Bearer ${this.token}`);
    const response = await this.fetchImpl(this.base + path, { ...init, method, headers });
    if (response.ok) return response;
    let code = `http_${response.status}`;
    let message = `${method} ${path.split('?')[0]} failed with HTTP ${response.status}`;
    let need: BlockHash[] | null = null;
    let details: Record<string, unknown> = {};
    try {
      const body = expectRecord(await response.json(), 'error');
      details = body;
      if (typeof body.error === 'string') code = body.error.slice(0, 100);
      if (typeof body.message === 'string') message = body.message.slice(0, 500);
      if (response.status === 409 && Array.isArray(body.need)) {
        need = expectArray(body.need, 'need', 100_000).map((hash, i) => parseBlockHash(hash, `need[${i}]`));
      }
    } catch {
      // A body that is not our JSON error still leaves a useful status.
    }
    if (need) throw new NeedBlocksError(need);
    throw new ApiError(response.status, code, message, details);
  }
}

/**
 * A 409 `conflict` answer to commits of `requests` as a CommitConflictError, its fields
 * checked (index in range, `current` a live entry of that element's path); other errors as they are.
 */
function conflictOf(error: unknown, requests: readonly CommitRequest[]): unknown {
  if (!(error instanceof ApiError && error.status === 409 && error.code === 'conflict')) return error;
  const index = requests.length === 1 && error.details.index === undefined ? 0 : error.details.index;
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= requests.length) {
    return new ValidationError('index', 'a conflict must name one of the commits sent');
  }
  const path = requests[index].path;
  return new CommitConflictError(path, index, parseConflictCurrent(error.details.current ?? null, path));
}

/** An old server's 400 for `parent` or `device`: "commit.parent: is not a known field". */
function refusesConditionalFields(error: unknown): boolean {
  if (!(error instanceof ApiError && error.status === 400 && error.code === 'invalid')) return false;
  const field = error.details.field;
  return typeof field === 'string' && /^commit(s\[\d+\])?\.(parent|device)$/.test(field) && error.message.includes('is not a known field');
}

class NeedBlocksError extends ApiError {
  constructor(readonly need: BlockHash[]) {
    super(409, 'need_blocks', 'server lacks blocks');
  }
}

async function readBoundedBody(response: Response, limit: number, pool?: BlockBufferPool): Promise<Uint8Array> {
  const declared = Number(response.headers.get('content-length') ?? NaN);
  if (declared > limit) {
    await response.body?.cancel();
    throw new ValidationError('block', `response of ${declared} bytes is over the ${limit}-byte block limit`);
  }
  if (!response.body) return new Uint8Array(0);
  if (pool && declared >= POOLED_BLOCK_MIN && declared <= pool.size) return readBodyInto(response.body, declared, pool);
  // A declared length bounds the body (HTTP framing ends it there), so it is read in one
  // call rather than dozens of chunk reads and a copy into one buffer.
  if (Number.isFinite(declared)) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel();
      throw new ValidationError('block', `response is over the ${limit}-byte block limit`);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

/** True for failures worth retrying later (network down, server overloaded or restarting). */
export function isTransient(error: unknown): boolean {
  if (error instanceof ApiError) return error.status >= 500 || error.status === 429 || error.status === 408;
  return !(error instanceof ValidationError);
}
