import { parseBlockHash, type BlockHash } from './block-hash.ts';
import { ValidationError } from './errors.ts';
import { expectArray, expectBoolean, expectInteger, expectOnlyKeys, expectRecord } from './fields.ts';
import { parseFilePath, type FilePath } from './file-path.ts';
import { parseDisplayLabel } from './display-label.ts';
import { MAX_BLOCKS_PER_FILE, MAX_BLOCK_SIZE, MAX_CURSOR, MAX_FILE_SIZE, MAX_JOURNAL_PAGE } from './limits.ts';

/** A journal cursor: the sjid of the last entry applied; 0 before the first. */
export type Cursor = number;

/** One numbered change to one file of a namespace. A delete carries no blocks. */
export interface JournalEntry {
  sjid: number;
  path: FilePath;
  size: number;
  /** Milliseconds since the Unix epoch, as the author's clock saw it. */
  mtime: number;
  blocks: BlockHash[];
  deleted: boolean;
}

/** What a client asks the server to append. */
export interface CommitRequest {
  path: FilePath;
  size: number;
  mtime: number;
  blocks: BlockHash[];
  deleted: boolean;
  /**
   * Conditional commit: the sjid of the live entry this version replaces, or 0 when the path
   * must not be live. Absent: unconditional (clients from before conditional commits).
   */
  parent?: number;
  /** Label of the device committing, shown in version history. */
  device?: string;
}

export interface JournalPage {
  entries: JournalEntry[];
  /** The sjid of the last entry in `entries`, or the requested cursor when there are none. */
  cursor: Cursor;
  /** True when entries past `cursor` exist already: read again at once. */
  more: boolean;
}

// mtime spans year 1970 to about year 2286; a wild clock is still a number we can show.
export const MAX_MTIME = 10_000_000_000_000;

export function parseCursor(value: unknown, field = 'cursor'): Cursor {
  return expectInteger(value, field, 0, MAX_CURSOR);
}

function parseFileFields(record: Record<string, unknown>, field: string): CommitRequest {
  const path = parseFilePath(record.path, `${field}.path`);
  const size = expectInteger(record.size, `${field}.size`, 0, MAX_FILE_SIZE);
  const mtime = expectInteger(record.mtime, `${field}.mtime`, 0, MAX_MTIME);
  const deleted = record.deleted === undefined ? false : expectBoolean(record.deleted, `${field}.deleted`);
  const blocks = expectArray(record.blocks, `${field}.blocks`, MAX_BLOCKS_PER_FILE).map((hash, i) =>
    parseBlockHash(hash, `${field}.blocks[${i}]`),
  );
  if (deleted && (blocks.length > 0 || size !== 0)) {
    throw new ValidationError(field, 'a deletion must have size 0 and no blocks');
  }
  // Every block holds 1..4 MiB, so the block count bounds the size from both sides.
  if (size > blocks.length * MAX_BLOCK_SIZE) {
    throw new ValidationError(`${field}.size`, 'is larger than its blocks can hold');
  }
  if (size < blocks.length) throw new ValidationError(`${field}.size`, 'is smaller than its block count (blocks are never empty)');
  return { path, size, mtime, blocks, deleted };
}

/** One commit body; `field` names it in errors (a batch element is `commits[3]`). */
export function parseCommitRequest(value: unknown, field = 'commit'): CommitRequest {
  const record = expectRecord(value, field);
  expectOnlyKeys(record, field, ['path', 'size', 'mtime', 'blocks', 'deleted', 'parent', 'device']);
  const request = parseFileFields(record, field);
  if (record.parent !== undefined) request.parent = parseCursor(record.parent, `${field}.parent`);
  if (record.device !== undefined) request.device = parseDeviceLabel(record.device, `${field}.device`);
  return request;
}

/**
 * A device's display name as commits carry it: the relay's peer label rules (NFC, trimmed,
 * 1 to 40 characters, no control or bidi-control characters), so one name shows in the peer
 * list and in version history, and none can break or reorder the text around it.
 */
export function parseDeviceLabel(value: unknown, field = 'device'): string {
  return parseDisplayLabel(value, field);
}

export function parseJournalEntry(value: unknown, field = 'entry'): JournalEntry {
  const record = expectRecord(value, field);
  const sjid = expectInteger(record.sjid, `${field}.sjid`, 1, MAX_CURSOR);
  return { sjid, ...parseFileFields(record, field) };
}

/**
 * Validates a journal page read after `requestedCursor`: entries strictly ascending, all
 * past the cursor, and `cursor` equal to the last one, so a hostile or broken server cannot
 * make a client skip or replay entries.
 */
export function parseJournalPage(value: unknown, requestedCursor: Cursor): JournalPage {
  const record = expectRecord(value, 'page');
  const entries = expectArray(record.entries, 'page.entries', MAX_JOURNAL_PAGE).map((entry, i) =>
    parseJournalEntry(entry, `page.entries[${i}]`),
  );
  const cursor = parseCursor(record.cursor, 'page.cursor');
  const more = expectBoolean(record.more, 'page.more');
  let previous = requestedCursor;
  for (const entry of entries) {
    if (entry.sjid !== previous + 1) {
      throw new ValidationError('page.entries', `sjid ${entry.sjid} does not follow ${previous} (journal must be gapless)`);
    }
    previous = entry.sjid;
  }
  if (cursor !== previous) throw new ValidationError('page.cursor', `must be ${previous}, the last sjid in the page`);
  return { entries, cursor, more };
}
