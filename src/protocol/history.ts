import { ValidationError } from './errors.ts';
import { expectArray, expectBoolean, expectInteger, expectRecord } from './fields.ts';
import type { FilePath } from './file-path.ts';
import { MAX_MTIME, parseDeviceLabel, parseJournalEntry, type JournalEntry } from './journal.ts';

/**
 * Version history (GET /api/v1/ns/:ns/history) and the conflict answer of a conditional
 * commit (409 `conflict`): both carry journal entries with the label of the device that
 * committed them.
 */

/**
 * A journal entry as history shows it: who committed it (null: a client that sent no label)
 * and when the server took the commit (ms since the epoch; null from a server that does not
 * say). `mtime` is the committing device's clock and may be far off; the commit time is the
 * one order a team shares.
 */
export interface VersionEntry extends JournalEntry {
  device: string | null;
  committedAt: number | null;
}

export interface HistoryResponse {
  /** Entries of one path, newest first, deletions included. */
  versions: VersionEntry[];
  /** Older versions exist past the last one: ask again with `before` = its sjid. */
  more: boolean;
}

export const DEFAULT_HISTORY_PAGE = 100;
export const MAX_HISTORY_PAGE = 1000;

export function parseVersionEntry(value: unknown, field = 'version'): VersionEntry {
  const record = expectRecord(value, field);
  const entry = parseJournalEntry(record, field);
  const device = record.device === null || record.device === undefined ? null : parseDeviceLabel(record.device, `${field}.device`);
  const committedAt = record.committedAt === null || record.committedAt === undefined ? null : expectInteger(record.committedAt, `${field}.committedAt`, 0, MAX_MTIME);
  return { ...entry, device, committedAt };
}

/**
 * A history page for `path`: every version of that path, at most MAX_HISTORY_PAGE, sjids
 * strictly descending and below `before` when one was asked, so a hostile server cannot
 * slip in another path's entries or make a client loop.
 */
export function parseHistoryResponse(value: unknown, path: FilePath, before: number | null = null): HistoryResponse {
  const record = expectRecord(value, 'history');
  const versions = expectArray(record.versions, 'history.versions', MAX_HISTORY_PAGE).map((item, i) =>
    parseVersionEntry(item, `history.versions[${i}]`),
  );
  const more = expectBoolean(record.more, 'history.more');
  let previous = before ?? Infinity;
  for (const [i, version] of versions.entries()) {
    if (version.path !== path) throw new ValidationError(`history.versions[${i}].path`, 'is not the path asked for');
    if (version.sjid >= previous) throw new ValidationError(`history.versions[${i}].sjid`, 'must be below the one before (newest first)');
    previous = version.sjid;
  }
  return { versions, more };
}

/** The `current` of a 409 conflict: the path's live entry, or null when the path is not live. */
export function parseConflictCurrent(value: unknown, path: FilePath): VersionEntry | null {
  if (value === null) return null;
  const current = parseVersionEntry(value, 'current');
  if (current.path !== path) throw new ValidationError('current.path', 'is not the path committed');
  if (current.deleted) throw new ValidationError('current.deleted', 'a live entry is not a deletion');
  return current;
}
