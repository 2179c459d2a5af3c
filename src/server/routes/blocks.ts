import {
  MAX_BLOCK_BATCH_BYTES,
  MAX_BLOCK_SIZE,
  encodeBlockRecordHeader,
  parseBlockBatchRequest,
  parseBlockHash,
  parseMissingRequest,
  parseNamespaceId,
  ValidationError,
  type BlockHash,
  type MissingResponse,
} from '../../protocol/index.ts';
import { authenticate, requireMember } from '../auth.ts';
import type { Handler, RequestContext, ServerDeps } from '../context.ts';
import { HttpError } from '../http/errors.ts';
import { readJson } from '../http/json-body.ts';
import { BatchWriter, finishStreamedResponse, sendBlockBytes, sendBlockInMemory } from '../http/block-egress.ts';
import { readBody, tooLarge } from '../http/read-body.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';
import { BlockReadAhead, type OpenedBlock } from '../storage/block-read-ahead.ts';
import { BlockRejectedError } from '../storage/block-store.ts';

/** POST /api/v1/blocks/missing — which of these hashes the server lacks (order kept, no repeats). */
const missing: Handler = async (ctx, deps) => {
  await authenticate(ctx.req, deps);
  const { hashes } = parseMissingRequest(await readJson(ctx.req));
  const unique = [...new Set(hashes)];
  const sizes = await deps.blocks.statMany(unique);
  const body: MissingResponse = { missing: unique.filter((_, i) => sizes[i] === null) };
  ctx.stats.bytesOut = sendJson(ctx.res, 200, body);
};

/** PUT /api/v1/blocks/:hash — raw bytes, hashed while streaming to a temp file. */
const upload: Handler = async (ctx, deps) => {
  await authenticate(ctx.req, deps);
  const hash = parseBlockHash(ctx.params.hash);
  const declared = ctx.req.headers['content-length'];
  if (declared !== undefined) {
    if (Number(declared) > MAX_BLOCK_SIZE) throw tooLarge(MAX_BLOCK_SIZE);
    if (Number(declared) === 0) throw new HttpError(400, 'empty', 'a block is never empty');
  }
  let result;
  try {
    result = await deps.blocks.put(hash, (onChunk) => readBody(ctx.req, MAX_BLOCK_SIZE, onChunk), MAX_BLOCK_SIZE);
  } catch (err) {
    throw rejection(err);
  }
  deps.metrics.blockBytesReceived += result.size;
  ctx.stats.bytesOut = sendJson(ctx.res, result.status === 'created' ? 201 : 200, { hash, size: result.size });
};

/**
 * POST /api/v1/blocks — raw bytes the client has not hashed: the server names the block by
 * its SHA-256 and answers `{hash, size}`. A browser uploading a picked file sends each slice
 * as it lies on disk, read once (by the network stack), instead of reading and hashing it
 * first; it commits the names it is given.
 */
const uploadUnnamed: Handler = async (ctx, deps) => {
  await authenticate(ctx.req, deps);
  const declared = ctx.req.headers['content-length'];
  if (declared !== undefined && Number(declared) > MAX_BLOCK_SIZE) throw tooLarge(MAX_BLOCK_SIZE);
  let result;
  try {
    result = await deps.blocks.putUnnamed((onChunk) => readBody(ctx.req, MAX_BLOCK_SIZE, onChunk), MAX_BLOCK_SIZE);
  } catch (err) {
    throw rejection(err);
  }
  deps.metrics.blockBytesReceived += result.size;
  ctx.stats.bytesOut = sendJson(ctx.res, result.status === 'created' ? 201 : 200, { hash: result.hash, size: result.size });
};

/** A refused block as the HTTP error to answer; any other error as it is. */
function rejection(err: unknown): unknown {
  if (!(err instanceof BlockRejectedError)) return err;
  if (err.reason === 'too_large') return tooLarge(MAX_BLOCK_SIZE);
  return new HttpError(400, err.reason, err.message);
}

/** GET /api/v1/blocks/:hash?ns=NS — the bytes, to a member of a namespace that references the block. */
const download: Handler = async (ctx, deps) => {
  const own = await authenticate(ctx.req, deps);
  const hash = parseBlockHash(ctx.params.hash);
  const nsParam = ctx.url.searchParams.get('ns');
  if (nsParam === null) throw new ValidationError('ns', 'is required (the namespace whose journal names the block)');
  const ns = parseNamespaceId(nsParam, 'ns');
  if (ns !== own) throw new HttpError(403, 'forbidden', 'this token is not a member of that workspace');
  if (!(await deps.metadata.namespaceReferencesBlock(ns, hash))) {
    if ((await deps.blocks.stat(hash)) === null) throw new HttpError(404, 'not_found', 'no such block');
    throw new HttpError(403, 'forbidden', 'this workspace does not reference that block');
  }
  const etag = `"${hash}"`;
  const cacheHeaders = { 'Cache-Control': 'private, max-age=31536000, immutable', ETag: etag };
  const inm = ctx.req.headers['if-none-match'];
  if (inm !== undefined && inm.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)) {
    ctx.res.writeHead(304, cacheHeaders).end();
    return;
  }
  const block = await deps.blocks.openRead(hash);
  if (!block) throw new HttpError(404, 'not_found', 'no such block');
  ctx.res.writeHead(200, {
    ...cacheHeaders,
    'Content-Type': 'application/octet-stream',
    'Content-Length': block.size,
  });
  await finishStreamedResponse(ctx, deps, () =>
    block.bytes ? sendBlockInMemory(ctx, deps, block.bytes) : sendBlockBytes(ctx, deps, block.stream, block.size),
  );
};

/**
 * POST /api/v1/ns/:ns/blocks {hashes} — many blocks in one response, as records in request
 * order (docs/protocol.md, "Batch block download"): a block the namespace does not
 * reference or the store lacks gets an absent record; the response stops before the block
 * that would take it past MAX_BLOCK_BATCH_BYTES (never before the first block).
 */
const downloadBatch: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const { hashes } = parseBlockBatchRequest(await readJson(ctx.req));
  const referenced = await deps.metadata.namespaceReferencedBlocks(ns, hashes);
  const ahead = new BlockReadAhead(deps.blocks, hashes.map((hash) => (referenced.has(hash) ? hash : null)));
  try {
    // The first block opens before the status is sent: a store that is down answers 503.
    const first = await ahead.take(0);
    ctx.res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Cache-Control': 'no-store' });
    ctx.res.once('finish', () => deps.metrics.blockBatchesServed++);
    await finishStreamedResponse(ctx, deps, () => sendRecords(ctx, deps, hashes, first, ahead));
  } finally {
    ahead.close();
  }
};

/**
 * The records, in order. Record headers and blocks that came in memory (small block files)
 * are gathered into few socket writes; a block that comes as a stream (large, or from S3)
 * is written as it is read, after what was gathered before it.
 */
async function sendRecords(
  ctx: RequestContext,
  deps: ServerDeps,
  hashes: readonly BlockHash[],
  first: OpenedBlock | null,
  ahead: BlockReadAhead,
): Promise<boolean> {
  const writer = new BatchWriter(ctx, deps);
  let blockBytes = 0;
  for (const [index, hash] of hashes.entries()) {
    const block = index === 0 ? first : await ahead.take(index);
    if (!block) {
      if (!(await writer.framing(encodeBlockRecordHeader(hash, null)))) return false;
      continue;
    }
    if (blockBytes > 0 && blockBytes + block.size > MAX_BLOCK_BATCH_BYTES) {
      block.stream?.destroy();
      break;
    }
    blockBytes += block.size;
    if (!(await writer.framing(encodeBlockRecordHeader(hash, block.size)))) return false;
    if (block.bytes) {
      if (!(await writer.block(block.bytes))) return false;
    } else if (!(await writer.flush()) || !(await sendBlockBytes(ctx, deps, block.stream, block.size))) {
      return false;
    }
  }
  return writer.flush();
}

export function blockRoutes(router: Router<Handler>): void {
  router.add('POST', '/api/v1/blocks/missing', missing);
  router.add('POST', '/api/v1/blocks', uploadUnnamed);
  router.add('PUT', '/api/v1/blocks/:hash', upload);
  router.add('GET', '/api/v1/blocks/:hash', download);
  router.add('POST', '/api/v1/ns/:ns/blocks', downloadBatch);
}
