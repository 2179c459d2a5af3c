import type { LanKeyResponse } from '../../protocol/index.ts';
import { requireMember } from '../auth.ts';
import type { Handler } from '../context.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';

/**
 * GET /api/v1/ns/:ns/lan-key: the namespace's LAN key, for members only. A secret: never
 * cached, never logged.
 */
const lanKey: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const body: LanKeyResponse = { lanKey: (await deps.metadata.lanKey(ns)).toString('base64url') };
  ctx.stats.bytesOut = sendJson(ctx.res, 200, body, { 'Cache-Control': 'no-store' });
};

export function lanRoutes(router: Router<Handler>): void {
  router.add('GET', '/api/v1/ns/:ns/lan-key', lanKey);
}
