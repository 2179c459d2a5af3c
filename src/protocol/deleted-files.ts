import { ValidationError } from './errors.ts';
import { expectArray, expectBoolean, expectInteger, expectRecord } from './fields.ts';
import { parseFilePath, type FilePath } from './file-path.ts';
import { MAX_MTIME, parseDeviceLabel } from './journal.ts';
import { MAX_CURSOR, MAX_FILE_SIZE } from './limits.ts';

/**
 * Recently deleted files (GET /api/v1/ns/:ns/deleted): paths whose latest journal entry is a
 * deletion, newest deletion first, each with what a restore needs (its last live version).
 */
export interface DeletedFile {
  path: FilePath;
  /** The deletion's sjid (the path's latest entry). */
  sjid: number;
  /** When the server committed the deletion, ms since the Unix epoch (server clock). */
  deletedAt: number;
  /** Label of the device that deleted it; null for a client that sent none. */
  device: string | null;
  /** The last live version before the deletion: its sjid, size and mtime. */
  lastSjid: number;
  size: number;
  mtime: number;
}

export interface DeletedFilesResponse {
  files: DeletedFile[];
  /** Older deletions exist: ask again with `before` = the last sjid of this page. */
  more: boolean;
}

export const DEFAULT_DELETED_PAGE = 100;
export const MAX_DELETED_PAGE = 1000;

// Unknown fields are ignored (as in history): a newer server may add some.
export function parseDeletedFile(value: unknown, field = 'file'): DeletedFile {
  const record = expectRecord(value, field);
  const sjid = expectInteger(record.sjid, `${field}.sjid`, 2, MAX_CURSOR);
  const lastSjid = expectInteger(record.lastSjid, `${field}.lastSjid`, 1, MAX_CURSOR);
  // A deletion always follows the live version it removed.
  if (lastSjid >= sjid) throw new ValidationError(`${field}.lastSjid`, 'must be below the deletion sjid');
  return {
    path: parseFilePath(record.path, `${field}.path`),
    sjid,
    deletedAt: expectInteger(record.deletedAt, `${field}.deletedAt`, 0, MAX_MTIME),
    device: record.device === null ? null : parseDeviceLabel(record.device, `${field}.device`),
    lastSjid,
    size: expectInteger(record.size, `${field}.size`, 0, MAX_FILE_SIZE),
    mtime: expectInteger(record.mtime, `${field}.mtime`, 0, MAX_MTIME),
  };
}

/**
 * A page of recently deleted files: at most MAX_DELETED_PAGE, deletion sjids strictly
 * descending and below `before`, each path once, so a hostile server cannot make a client
 * loop or list a path twice.
 */
export function parseDeletedFilesResponse(value: unknown, before: number | null = null): DeletedFilesResponse {
  const record = expectRecord(value, 'deleted');
  const files = expectArray(record.files, 'deleted.files', MAX_DELETED_PAGE).map((item, i) => parseDeletedFile(item, `deleted.files[${i}]`));
  const more = expectBoolean(record.more, 'deleted.more');
  let previous = before ?? Infinity;
  const paths = new Set<string>();
  for (const [i, file] of files.entries()) {
    if (file.sjid >= previous) throw new ValidationError(`deleted.files[${i}].sjid`, 'must be below the one before (newest first)');
    if (paths.has(file.path)) throw new ValidationError(`deleted.files[${i}].path`, 'is listed twice');
    paths.add(file.path);
    previous = file.sjid;
  }
  return { files, more };
}
