import { ApiError } from '../engine/server-api.ts';
import type { JournalClient, JournalReadOptions } from '../engine/types.ts';
import {
  MAX_JOURNAL_PAGE,
  expectArray,
  expectRecord,
  parseCursor,
  parseJournalEntry,
  parseJournalPage,
  type Cursor,
  type FilePath,
  type JournalEntry,
  type JournalPage,
  type NamespaceId,
} from '../protocol/index.ts';
import { TEMP_PREFIX } from './folder/safe-path.ts';

/**
 * Stands in for a refused entry: a deletion of a path under the daemon's reserved temp
 * prefix, which no file of the folder can have (the materialiser refuses such names and
 * the scanner never uploads them). It keeps the page gapless so the cursor moves past the
 * refused entry. (The engine takes the cursor from the last entry; were it to take the
 * page's cursor, refused entries could simply be dropped.)
 */
export const REFUSED_ENTRY_PATH = `${TEMP_PREFIX}refused-entry` as FilePath;

export type RefusedEntryListener = (sjid: number, path: unknown, reason: string) => void;

/**
 * Reads the journal like ServerApi, but judges entries one by one: an entry that breaks the
 * protocol (a path like `../x`, a bad hash) is reported and replaced, and the honest entries
 * of the same page still apply. The page's structure (gapless sjids after the cursor asked
 * for, `cursor` equal to the last) is still checked strictly: without it the daemon could be
 * made to skip or replay entries.
 */
export class TolerantJournalClient implements JournalClient {
  constructor(
    private readonly server: string,
    private readonly ns: NamespaceId,
    private readonly token: string,
    private readonly onRefused: RefusedEntryListener,
  ) {}

  async readPage(cursor: Cursor, options: JournalReadOptions = {}): Promise<JournalPage> {
    const query = new URLSearchParams({ cursor: String(parseCursor(cursor)) });
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.waitSeconds) query.set('wait', String(options.waitSeconds));
    const response = await fetch(`${this.server}/api/v1/ns/${this.ns}/journal?${query}`, {
      headers: { authorization: `Bearer ${this.token}` },
      signal: options.signal,
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new ApiError(response.status, `http_${response.status}`, `journal read failed with HTTP ${response.status}`);
    }
    const body = expectRecord(await response.json(), 'page');
    const raw = expectArray(body.entries, 'page.entries', MAX_JOURNAL_PAGE);
    const entries = raw.map((value, i) => this.judge(value, i));
    return parseJournalPage({ entries, cursor: body.cursor, more: body.more }, cursor);
  }

  private judge(value: unknown, index: number): JournalEntry {
    try {
      return parseJournalEntry(value, `page.entries[${index}]`);
    } catch (error) {
      // Without a well-formed sjid the page cannot be placed at all: refuse the whole page.
      const record = expectRecord(value, `page.entries[${index}]`);
      const sjid = parseCursor(record.sjid, `page.entries[${index}].sjid`);
      if (sjid < 1) throw error;
      this.onRefused(sjid, record.path, (error as Error).message);
      return { sjid, path: REFUSED_ENTRY_PATH, size: 0, mtime: 0, blocks: [], deleted: true };
    }
  }
}
