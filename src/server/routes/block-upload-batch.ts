import { createHash } from 'node:crypto';
import {
  BlockBatchTooLargeError,
  BlockUploadReader,
  MAX_BLOCK_BATCH,
  MAX_BLOCK_BATCH_BYTES,
  blockUploadBodyBytes,
  type BlockUpload,
  type BlockUploadBatchResponse,
} from '../../protocol/index.ts';
import { authenticate } from '../auth.ts';
import type { Handler } from '../context.ts';
import { HttpError } from '../http/errors.ts';
import { readBody, tooLarge } from '../http/read-body.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';

/** The largest body a batch upload may send: MAX_BLOCK_BATCH record headers and MAX_BLOCK_BATCH_BYTES of blocks. */
export const MAX_BLOCK_UPLOAD_BODY = blockUploadBodyBytes(MAX_BLOCK_BATCH_BYTES, MAX_BLOCK_BATCH);

/**
 * POST /api/v1/blocks/batch — many blocks in one request, as records (docs/protocol.md,
 * "Batch block upload"). Every record is parsed and its hash verified before anything is
 * stored: one bad record refuses the whole batch (400 naming it, or 413 past the byte
 * limit) and nothing of it is kept. Then the store makes the batch durable together.
 */
const uploadBatch: Handler = async (ctx, deps) => {
  await authenticate(ctx.req, deps);
  const declared = ctx.req.headers['content-length'];
  if (declared !== undefined && Number(declared) > MAX_BLOCK_UPLOAD_BODY) throw tooLarge(MAX_BLOCK_UPLOAD_BODY);
  // The body is not read until a slot is free: a burst of batches holds a bounded amount of memory.
  const release = await deps.blockUploadBatches.acquire();
  try {
    const reader = new BlockUploadReader();
    const blocks: BlockUpload[] = [];
    try {
      await readBody(ctx.req, MAX_BLOCK_UPLOAD_BODY, (chunk) => {
        for (const record of reader.push(chunk)) {
          const index = blocks.length;
          const actual = createHash('sha256').update(record.bytes).digest('hex');
          if (actual !== record.hash) {
            throw new HttpError(400, 'hash_mismatch', `blocks[${index}]: the bytes hash to ${actual}, not ${record.hash}`, { extra: { index } });
          }
          blocks.push(record);
        }
      });
      reader.end();
    } catch (err) {
      if (err instanceof BlockBatchTooLargeError) throw new HttpError(413, 'too_large', err.message, { extra: { field: err.field } });
      throw err;
    }
    const results = await deps.blocks.putMany(blocks);
    const created = results.filter((result) => result.status === 'created').length;
    deps.metrics.blockBytesReceived += results.reduce((n, result) => n + result.size, 0);
    deps.metrics.blockBatchesReceived++;
    const body: BlockUploadBatchResponse = { created, existing: results.length - created };
    ctx.stats.bytesOut = sendJson(ctx.res, 200, body);
  } finally {
    release();
  }
};

export function blockUploadBatchRoutes(router: Router<Handler>): void {
  router.add('POST', '/api/v1/blocks/batch', uploadBatch);
}
