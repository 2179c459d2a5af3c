import { ValidationError } from './errors.ts';
import { MAX_PATH_BYTES, MAX_SEGMENT_BYTES } from './limits.ts';

/**
 * A workspace-relative file path: segments joined by "/". Checked here once so that no
 * party (server, browser, LAN daemon writing to disk) ever sees a path that could escape
 * a folder or mean two different things on two systems.
 */
export type FilePath = string & { readonly __brand: 'FilePath' };

const utf8 = new TextEncoder();
// C0 controls and DEL: invisible in the UI and meaningful to terminals.
const CONTROL = /[\u0000-\u001f\u007f]/;

export function parseFilePath(value: unknown, field = 'path'): FilePath {
  if (typeof value !== 'string') throw new ValidationError(field, 'must be a string');
  if (value.length === 0) throw new ValidationError(field, 'must not be empty');
  if (value.includes('\u0000')) throw new ValidationError(field, 'must not contain NUL');
  if (CONTROL.test(value)) throw new ValidationError(field, 'must not contain control characters');
  if (utf8.encode(value).length > MAX_PATH_BYTES) {
    throw new ValidationError(field, `must be at most ${MAX_PATH_BYTES} bytes of UTF-8`);
  }
  if (value.normalize('NFC') !== value) throw new ValidationError(field, 'must be in Unicode NFC form');
  if (value.startsWith('/')) throw new ValidationError(field, 'must be relative, not absolute');
  // Backslash and drive letters are separators or roots on Windows daemons.
  if (value.includes('\\')) throw new ValidationError(field, 'must not contain a backslash');
  if (/^[A-Za-z]:/.test(value)) throw new ValidationError(field, 'must not start with a drive letter');
  for (const segment of value.split('/')) {
    if (segment === '') throw new ValidationError(field, 'must not contain an empty segment');
    if (segment === '.' || segment === '..') throw new ValidationError(field, 'must not contain "." or ".." segments');
    if (utf8.encode(segment).length > MAX_SEGMENT_BYTES) {
      throw new ValidationError(field, `segments must be at most ${MAX_SEGMENT_BYTES} bytes`);
    }
  }
  return value as FilePath;
}

/** Turns a name chosen by a user (drag and drop, rename box) into a valid path, or throws. */
export function normaliseUserPath(input: string): FilePath {
  const cleaned = input
    .normalize('NFC')
    .split(/[\\/]+/)
    .filter((segment) => segment !== '' && segment !== '.')
    .join('/');
  return parseFilePath(cleaned);
}
