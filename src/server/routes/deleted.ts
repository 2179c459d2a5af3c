import { DEFAULT_DELETED_PAGE, MAX_CURSOR, MAX_DELETED_PAGE, ValidationError, type DeletedFilesResponse } from '../../protocol/index.ts';
import { requireMember } from '../auth.ts';
import type { Handler } from '../context.ts';
import { queryInt } from '../http/query.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';

/**
 * GET /api/v1/ns/:ns/deleted[?limit=L][&before=S] — recently deleted files: paths whose latest
 * journal entry is a deletion, newest deletion first, each with its last live version (what
 * a restore commits). `before` pages back (deletions with sjid < S).
 */
const deleted: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const limit = queryInt(ctx.url, 'limit', DEFAULT_DELETED_PAGE, 1, MAX_DELETED_PAGE);
  const before = queryInt(ctx.url, 'before', 0, 1, MAX_CURSOR);
  for (const name of ctx.url.searchParams.keys()) {
    if (name !== 'limit' && name !== 'before') throw new ValidationError(name, 'is not a known parameter');
  }
  // Only deletions within HISTORY_DAYS: older ones' blocks are block GC's to remove, so they
  // could not be restored.
  const since = Date.now() - deps.historyMs;
  const body: DeletedFilesResponse = await deps.metadata.deletedFiles(ns, before === 0 ? null : before, limit, since);
  ctx.stats.bytesOut = sendJson(ctx.res, 200, body);
};

export function deletedRoutes(router: Router<Handler>): void {
  router.add('GET', '/api/v1/ns/:ns/deleted', deleted);
}
