import type { Handler } from '../context.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';

/** GET /api/v1/config: settings a browser needs before it connects to peers. No token. */
const config: Handler = async (ctx, deps) => {
  ctx.stats.bytesOut = sendJson(ctx.res, 200, deps.clientConfig);
};

export function configRoutes(router: Router<Handler>): void {
  router.add('GET', '/api/v1/config', config);
}
