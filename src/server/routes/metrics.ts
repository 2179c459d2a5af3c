import type { Handler } from '../context.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';

const metrics: Handler = async (ctx, deps) => {
  ctx.stats.bytesOut = sendJson(ctx.res, 200, deps.metrics.snapshot());
};

const health: Handler = async (ctx) => {
  ctx.stats.bytesOut = sendJson(ctx.res, 200, { ok: true });
};

export function metricsRoutes(router: Router<Handler>): void {
  router.add('GET', '/api/v1/metrics', metrics);
  router.add('GET', '/api/v1/health', health);
}
