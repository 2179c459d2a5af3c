import {
  parseCommitBatchRequest,
  parseCommitRequest,
  type BlockHash,
  type CommitBatchResponse,
  type CommitRequest,
  type CommitResponse,
  type NamespaceId,
} from '../../protocol/index.ts';
import { requireMember } from '../auth.ts';
import type { Handler, ServerDeps } from '../context.ts';
import { HttpError } from '../http/errors.ts';
import { readJson } from '../http/json-body.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';

/**
 * POST /api/v1/ns/:ns/commit — appends one entry once the block store holds every block
 * and their stored sizes add up to `size`.
 */
const commit: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const request = parseCommitRequest(await readJson(ctx.req));
  const [sjid] = await commitAll(deps, ns, [request], false);
  const body: CommitResponse = { sjid };
  ctx.stats.bytesOut = sendJson(ctx.res, 200, body);
};

/**
 * POST /api/v1/ns/:ns/commits — 1 … 1000 commits in one transaction: consecutive sjids in
 * array order, all or nothing. Errors that concern one element name it with `index`.
 */
const commitBatch: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const { commits } = parseCommitBatchRequest(await readJson(ctx.req));
  const sjids = await commitAll(deps, ns, commits, true);
  deps.metrics.commitBatches++;
  const body: CommitBatchResponse = { sjids };
  ctx.stats.bytesOut = sendJson(ctx.res, 200, body);
};

/**
 * Checks the blocks, appends the entries and wakes long polls once. `indexed`: errors name
 * the element (batch route).
 *
 * Block GC may remove blocks, so the check that counts runs inside the commit, where no GC
 * batch can run until the entries are written (`beforeWrite`, see GcMetadata): a block GC
 * removed before it is missing there (409 need_blocks), and GC re-reads the references
 * after it, so it keeps the blocks this commit names. The first check, before the commit,
 * answers a commit with missing blocks without holding anything (on PostgreSQL, a pooled
 * connection) and fills the size cache, so the second one costs no store request unless the
 * GC generation moved (then the cache may name removed blocks, and is dropped).
 */
async function commitAll(deps: ServerDeps, ns: NamespaceId, requests: readonly CommitRequest[], indexed: boolean): Promise<number[]> {
  await requireStoredBlocks(deps, requests, indexed);
  const result = await deps.metadata.commitBatch(ns, requests, async (gcGeneration) => {
    deps.gcGeneration.observe(gcGeneration);
    await requireStoredBlocks(deps, requests, indexed);
  });
  if (!result.ok) {
    if (result.reason === 'no_namespace') throw new HttpError(404, 'not_found', 'no such workspace');
    const index = indexed ? { index: result.index } : {};
    const request = requests[result.index];
    if (result.reason === 'conflict') {
      const what = indexed ? `commits[${result.index}]: ` : '';
      const live = result.current === null ? 'is not live' : `is live at entry ${result.current.sjid}`;
      throw new HttpError(409, 'conflict', `${what}${request.path} ${live}, not at the parent ${request.parent}; nothing was committed`, {
        extra: { ...index, current: result.current },
      });
    }
    throw new HttpError(409, 'not_live', `${request.path} is not a live file`, { extra: index });
  }
  deps.metrics.commits += requests.length;
  deps.notifier.notify(ns, result.sjids[result.sjids.length - 1]);
  return result.sjids;
}

/**
 * 409 need_blocks naming every missing block of every request (once each, in order), else
 * 400 size_mismatch for the first request whose stored blocks do not add up to its size.
 */
async function requireStoredBlocks(deps: ServerDeps, requests: readonly CommitRequest[], indexed: boolean): Promise<void> {
  const unique = [...new Set(requests.flatMap((request) => request.blocks))];
  const sizes = await deps.blocks.statMany(unique);
  const sizeOf = new Map(unique.map((hash, i) => [hash, sizes[i]]));
  const need: BlockHash[] = unique.filter((hash) => sizeOf.get(hash) === null);
  if (need.length > 0) {
    throw new HttpError(409, 'need_blocks', `upload ${need.length} missing block(s), then commit again`, { extra: { need } });
  }
  for (const [index, request] of requests.entries()) {
    const total = request.blocks.reduce((sum, hash) => sum + (sizeOf.get(hash) ?? 0), 0);
    if (total === request.size) continue;
    const what = indexed ? `commits[${index}]: the blocks` : 'the blocks';
    throw new HttpError(400, 'size_mismatch', `${what} hold ${total} bytes, not ${request.size}`, indexed ? { extra: { index } } : {});
  }
}

export function commitRoutes(router: Router<Handler>): void {
  router.add('POST', '/api/v1/ns/:ns/commit', commit);
  router.add('POST', '/api/v1/ns/:ns/commits', commitBatch);
}
