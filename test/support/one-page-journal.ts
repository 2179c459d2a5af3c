import type { JournalClient } from '../../src/engine/types.ts';
import type { JournalPage } from '../../src/protocol/index.ts';

/** A journal with one page of entries, then long polls that end only when aborted. */
export function onePageJournal(page: JournalPage): JournalClient {
  let served = false;
  return {
    async readPage(_cursor, options) {
      if (!served) {
        served = true;
        return page;
      }
      await new Promise<void>((resolve) => options?.signal?.addEventListener('abort', () => resolve()));
      return { entries: [], cursor: page.cursor, more: false } as unknown as JournalPage;
    },
  };
}
