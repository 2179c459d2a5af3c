import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import {
  MAX_BLOCK_SIZE,
  parseBlockHash,
  parseMissingRequest,
  parseNamespaceId,
  ValidationError,
  type MissingResponse,
} from '../../protocol/index.ts';
import { authenticate } from '../auth.ts';
import type { Handler, RequestContext, ServerDeps } from '../context.ts';
import { HttpError } from '../http/errors.ts';
import { readJson } from '../http/json-body.ts';
import { readBody, tooLarge } from '../http/read-body.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';
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
    if (err instanceof BlockRejectedError) {
      if (err.reason === 'too_large') throw tooLarge(MAX_BLOCK_SIZE);
      throw new HttpError(400, err.reason, err.message);
    }
    throw err;
  }
  deps.metrics.blockBytesReceived += result.size;
  ctx.stats.bytesOut = sendJson(ctx.res, result.status === 'created' ? 201 : 200, { hash, size: result.size });
};

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
  ctx.res.once('finish', () => deps.metrics.blockRequestsServed++);
  await streamBlock(ctx, deps, block.stream);
};

/** Writes a block to the response, paced by the egress limiter, counting flushed bytes. */
async function streamBlock(ctx: RequestContext, deps: ServerDeps, stream: Readable): Promise<void> {
  const { res, clientGone } = ctx;
  const slice = deps.egress?.sliceBytes ?? Number.MAX_SAFE_INTEGER;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      for (let offset = 0; offset < chunk.length; offset += slice) {
        const piece = slice >= chunk.length ? chunk : chunk.subarray(offset, offset + slice);
        if (deps.egress) await deps.egress.take(piece.length, clientGone);
        if (clientGone.aborted || res.destroyed) return;
        const ok = res.write(piece, (err) => {
          if (!err) deps.metrics.blockBytesServed += piece.length;
        });
        ctx.stats.bytesOut += piece.length;
        if (!ok) await drained(res);
      }
    }
    res.end();
  } catch (err) {
    if (!clientGone.aborted) deps.logger.warn('block stream failed', { err });
    res.destroy();
  } finally {
    stream.destroy();
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

export function blockRoutes(router: Router<Handler>): void {
  router.add('POST', '/api/v1/blocks/missing', missing);
  router.add('PUT', '/api/v1/blocks/:hash', upload);
  router.add('GET', '/api/v1/blocks/:hash', download);
}
