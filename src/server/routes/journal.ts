import {
  DEFAULT_JOURNAL_PAGE,
  MAX_CURSOR,
  MAX_JOURNAL_PAGE,
  MAX_LONG_POLL_SECONDS,
  parseDecimal,
  type JournalPage,
  type NamespaceId,
} from '../../protocol/index.ts';
import { requireMember } from '../auth.ts';
import type { Handler, ServerDeps } from '../context.ts';
import { HttpError } from '../http/errors.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';

function queryInt(url: URL, name: string, fallback: number, min: number, max: number): number {
  const values = url.searchParams.getAll(name);
  if (values.length === 0) return fallback;
  if (values.length > 1) throw new HttpError(400, 'invalid', `${name}: must be given once`);
  return parseDecimal(values[0], name, min, max);
}

async function readPage(deps: ServerDeps, ns: NamespaceId, cursor: number, limit: number): Promise<JournalPage> {
  const { entries, more } = await deps.metadata.readJournal(ns, cursor, limit);
  return { entries, cursor: entries.length > 0 ? entries[entries.length - 1].sjid : cursor, more };
}

/**
 * GET /api/v1/ns/:ns/journal?cursor=C&limit=L&wait=S — entries after C. With wait=S and
 * nothing new, holds the request up to S seconds and answers as soon as a commit lands.
 */
const readJournal: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const cursor = queryInt(ctx.url, 'cursor', 0, 0, MAX_CURSOR);
  const limit = queryInt(ctx.url, 'limit', DEFAULT_JOURNAL_PAGE, 1, MAX_JOURNAL_PAGE);
  const wait = queryInt(ctx.url, 'wait', 0, 0, MAX_LONG_POLL_SECONDS);

  const head = await deps.metadata.headSjid(ns);
  if (cursor > head) {
    throw new HttpError(400, 'cursor_ahead', `cursor ${cursor} is past the journal head ${head}; resync from 0`, {
      extra: { head },
    });
  }
  let page = await readPage(deps, ns, cursor, limit);
  if (page.entries.length === 0 && wait > 0 && !deps.shutdown.aborted) {
    const done = new AbortController();
    const signal = AbortSignal.any([ctx.clientGone, deps.shutdown, done.signal]);
    // Register before reading again, so a commit landing in between still wakes us.
    const woken = deps.notifier.wait(ns, cursor, wait * 1000, signal);
    page = await readPage(deps, ns, cursor, limit);
    if (page.entries.length === 0) {
      deps.metrics.journalLongPollsOpen++;
      try {
        await woken;
      } finally {
        deps.metrics.journalLongPollsOpen--;
      }
      if (ctx.clientGone.aborted) return;
      page = await readPage(deps, ns, cursor, limit);
    } else {
      done.abort(); // release the waiter we no longer need
    }
  }
  ctx.stats.bytesOut = sendJson(ctx.res, 200, page);
};

export function journalRoutes(router: Router<Handler>): void {
  router.add('GET', '/api/v1/ns/:ns/journal', readJournal);
}
