import type { WorkspaceSummary } from '../../workers/sync-api.ts';
import { inviteFromLink } from '../protocol/index.ts';
import { errorMessage, messagePage } from './message-page.ts';
import type { Page } from './page.ts';
import type { SyncApi } from './sync-client.ts';

export type JoinOutcome = { kind: 'no-invite' } | { kind: 'joined'; workspace: WorkspaceSummary } | { kind: 'failed'; page: Page };

/** Joins the workspace whose invite the URL fragment carries, if any. */
export async function joinFromLocation(api: SyncApi, href: string): Promise<JoinOutcome> {
  const fragment = new URL(href).hash;
  if (!/[#&]invite=/.test(fragment)) return { kind: 'no-invite' };
  const invite = inviteFromLink(href);
  if (!invite) {
    return {
      kind: 'failed',
      page: messagePage({
        title: 'This link is incomplete',
        body: 'The share link seems to be cut short. Copy the whole link again and open it.',
        testId: 'join-error',
        tone: 'error',
      }),
    };
  }
  try {
    return { kind: 'joined', workspace: await api.joinWorkspace(invite) };
  } catch (error) {
    const detail = errorMessage(error);
    // The worker's ApiError (its name survives comlink) means the server answered and said no;
    // anything else (a TypeError from fetch) means it was not reached.
    const answered = error instanceof Error && error.name === 'ApiError';
    const refused = (answered && !/\b5\d\d\b/.test(detail)) || /\b(401|403|404)\b|revoked|invalid|unknown|replaced|expired/i.test(detail);
    return {
      kind: 'failed',
      page: messagePage({
        title: refused ? 'This link no longer works' : 'Could not join the workspace',
        body: refused
          ? 'The server did not accept this link: it may be cut short, or someone in the team reset it. Ask them for the current link.'
          : 'The server could not be reached or refused the request. Check your connection and open the link again.',
        detail,
        testId: 'join-error',
        tone: 'error',
      }),
    };
  }
}
