import {
  DEFAULT_JOURNAL_PAGE,
  MAX_CURSOR,
  MAX_JOURNAL_PAGE,
  MAX_LONG_POLL_SECONDS,
  type JournalPage,
  type NamespaceId,
} from '../../protocol/index.ts';
import { requireMember } from '../auth.ts';
import type { Handler, ServerDeps } from '../context.ts';
import { HttpError } from '../http/errors.ts';
import { queryInt } from '../http/query.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';

/** The page after `cursor`, from a read that started no earlier than `notBefore` (performance.now()). */
async function readPage(deps: ServerDeps, ns: NamespaceId, cursor: number, limit: number, notBefore: number): Promise<JournalPage> {
  const { entries, more } = await deps.journalReads.read(`${ns}\u0000${cursor}\u0000${limit}`, notBefore, () =>
    deps.metadata.readJournal(ns, cursor, limit),
  );
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

  const arrived = performance.now();
  const head = await deps.metadata.headSjid(ns);
  if (cursor > head) {
    throw new HttpError(400, 'cursor_ahead', `cursor ${cursor} is past the journal head ${head}; resync from 0`, {
      extra: { head },
    });
  }
  let page = await readPage(deps, ns, cursor, limit, arrived);
  if (page.entries.length === 0 && wait > 0 && !deps.shutdown.aborted) {
    const done = new AbortController();
    const signal = AbortSignal.any([ctx.clientGone, deps.shutdown, done.signal]);
    // Register before reading again, so a commit landing in between still wakes us.
    const registered = performance.now();
    // Stamped as the notifier resolves: every poll of a namespace woken by one commit gets its
    // stamp before any of them starts reading, so they can all share one read.
    const woken = deps.notifier.wait(ns, cursor, wait * 1000, signal).then(() => performance.now());
    page = await readPage(deps, ns, cursor, limit, registered);
    if (page.entries.length === 0) {
      deps.metrics.journalLongPollsOpen++;
      let wokeAt: number;
      try {
        wokeAt = await woken;
      } finally {
        deps.metrics.journalLongPollsOpen--;
      }
      if (ctx.clientGone.aborted) return;
      page = await readPage(deps, ns, cursor, limit, wokeAt);
    } else {
      done.abort(); // release the waiter we no longer need
    }
  }
  ctx.stats.bytesOut = sendJson(ctx.res, 200, page);
};

export function journalRoutes(router: Router<Handler>): void {
  router.add('GET', '/api/v1/ns/:ns/journal', readJournal);
}
