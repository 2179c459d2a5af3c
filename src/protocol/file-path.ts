import { ValidationError } from './errors.ts';
import { MAX_PATH_BYTES, MAX_SEGMENT_BYTES } from './limits.ts';

/**
 * A workspace-relative file path: segments joined by "/". Checked here once so that no
 * party (server, browser, LAN daemon writing to disk) ever sees a path that could escape
 * a folder or mean two different things on two systems.
 */
export type FilePath = string & { readonly __brand: 'FilePath' };

// C0 controls and DEL: invisible in the UI and meaningful to terminals.
const CONTROL = /[\u0000-\u001f\u007f]/;
/** Printable ASCII only: its UTF-8 is one byte a character and it is NFC already. */
const PRINTABLE_ASCII = /^[\u0020-\u007e]*$/;

/**
 * UTF-8 length without encoding (a join checks 100,000 paths; TextEncoder's copies and
 * normalize() were most of the worker's time spent on journal pages). Lone surrogates
 * count 3 bytes, as TextEncoder writes them (U+FFFD).
 */
function utf8Length(value: string): number {
  let bytes = 0;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < value.length && (value.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i += 1;
    } else bytes += 3;
  }
  return bytes;
}

export function parseFilePath(value: unknown, field = 'path'): FilePath {
  if (typeof value !== 'string') throw new ValidationError(field, 'must be a string');
  if (value.length === 0) throw new ValidationError(field, 'must not be empty');
  const ascii = PRINTABLE_ASCII.test(value);
  if (!ascii) {
    if (value.includes('\u0000')) throw new ValidationError(field, 'must not contain NUL');
    if (CONTROL.test(value)) throw new ValidationError(field, 'must not contain control characters');
  }
  const byteLength = ascii ? (s: string) => s.length : utf8Length;
  if (byteLength(value) > MAX_PATH_BYTES) {
    throw new ValidationError(field, `must be at most ${MAX_PATH_BYTES} bytes of UTF-8`);
  }
  if (!ascii && value.normalize('NFC') !== value) throw new ValidationError(field, 'must be in Unicode NFC form');
  if (value.startsWith('/')) throw new ValidationError(field, 'must be relative, not absolute');
  // Backslash and drive letters are separators or roots on Windows daemons.
  if (value.includes('\\')) throw new ValidationError(field, 'must not contain a backslash');
  if (/^[A-Za-z]:/.test(value)) throw new ValidationError(field, 'must not start with a drive letter');
  for (const segment of value.split('/')) {
    if (segment === '') throw new ValidationError(field, 'must not contain an empty segment');
    if (segment === '.' || segment === '..') throw new ValidationError(field, 'must not contain "." or ".." segments');
    if (byteLength(segment) > MAX_SEGMENT_BYTES) {
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
