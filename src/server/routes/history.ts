import {
  DEFAULT_HISTORY_PAGE,
  MAX_CURSOR,
  MAX_HISTORY_PAGE,
  ValidationError,
  parseFilePath,
  type HistoryResponse,
} from '../../protocol/index.ts';
import { requireMember } from '../auth.ts';
import type { Handler } from '../context.ts';
import { queryInt, queryValue } from '../http/query.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';

/**
 * GET /api/v1/ns/:ns/history?path=P[&limit=L][&before=S] — the versions of one path, newest
 * first, deletions included, each with the label of the device that committed it. `before`
 * pages back through a long history (entries with sjid < S).
 */
const history: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const raw = queryValue(ctx.url, 'path');
  if (raw === null) throw new ValidationError('path', 'is required');
  const path = parseFilePath(raw, 'path');
  const limit = queryInt(ctx.url, 'limit', DEFAULT_HISTORY_PAGE, 1, MAX_HISTORY_PAGE);
  const before = queryInt(ctx.url, 'before', 0, 1, MAX_CURSOR);
  for (const name of ctx.url.searchParams.keys()) {
    if (name !== 'path' && name !== 'limit' && name !== 'before') throw new ValidationError(name, 'is not a known parameter');
  }
  const body: HistoryResponse = await deps.metadata.history(ns, path, before === 0 ? null : before, limit);
  ctx.stats.bytesOut = sendJson(ctx.res, 200, body);
};

export function historyRoutes(router: Router<Handler>): void {
  router.add('GET', '/api/v1/ns/:ns/history', history);
}
