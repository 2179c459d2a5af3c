import { parseCommitRequest, type BlockHash, type CommitResponse } from '../../protocol/index.ts';
import { requireMember } from '../auth.ts';
import type { Handler } from '../context.ts';
import { HttpError } from '../http/errors.ts';
import { readJson } from '../http/json-body.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';

/**
 * POST /api/v1/ns/:ns/commit — appends one entry once the block store holds every block
 * and their stored sizes add up to `size`. Blocks are never removed, so checking them
 * before the metadata transaction is enough.
 */
const commit: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const request = parseCommitRequest(await readJson(ctx.req));

  const sizes = await deps.blocks.statMany(request.blocks);
  const need: BlockHash[] = [];
  const seen = new Set<string>();
  let total = 0;
  sizes.forEach((size, i) => {
    const hash = request.blocks[i];
    if (size === null) {
      if (!seen.has(hash)) need.push(hash);
      seen.add(hash);
    } else {
      total += size;
    }
  });
  if (need.length > 0) {
    throw new HttpError(409, 'need_blocks', `upload ${need.length} missing block(s), then commit again`, { extra: { need } });
  }
  if (total !== request.size) {
    throw new HttpError(400, 'size_mismatch', `the blocks hold ${total} bytes, not ${request.size}`);
  }

  const result = await deps.metadata.commit(ns, request);
  if (!result.ok) {
    if (result.reason === 'not_live') throw new HttpError(409, 'not_live', `${request.path} is not a live file`);
    throw new HttpError(404, 'not_found', 'no such workspace');
  }
  deps.metrics.commits++;
  deps.notifier.notify(ns, result.sjid);
  const body: CommitResponse = { sjid: result.sjid };
  ctx.stats.bytesOut = sendJson(ctx.res, 200, body);
};

export function commitRoutes(router: Router<Handler>): void {
  router.add('POST', '/api/v1/ns/:ns/commit', commit);
}
