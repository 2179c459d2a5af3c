import { ValidationError } from './errors.ts';
import { parseFilePath, type FilePath } from './file-path.ts';
import { MAX_PATH_BYTES, MAX_SEGMENT_BYTES } from './limits.ts';

const utf8 = new TextEncoder();

/** An extension longer than this is part of the name (keeping it could leave no room for the tag). */
const MAX_EXT_BYTES = 32;
/** The device part of the tag, in UTF-8 bytes. */
const MAX_DEVICE_BYTES = 32;

/**
 * `name (conflicted copy 2024-05-01 142233 device).ext`: the name under which a device keeps
 * its own version of a file when another version took the path first (a local edit meeting a
 * remote one, or a conditional commit answered 409 `conflict`). Every party (browser, native
 * peer) uses this one rule, so the copies look alike whoever made them. Date and time are the
 * device's local clock. `taken` says whether a candidate exists already; a counter is added
 * until one is free. `maxBytes` bounds the result (a path segment, or what a long folder path
 * leaves of it).
 */
export function conflictedCopyName(
  name: string,
  date: Date,
  device: string,
  taken: (candidate: string) => boolean,
  maxBytes = MAX_SEGMENT_BYTES,
): string {
  const dot = name.lastIndexOf('.');
  const hasExt = dot > 0 && dot < name.length - 1 && utf8.encode(name.slice(dot)).length <= MAX_EXT_BYTES;
  const stem = hasExt ? name.slice(0, dot) : name;
  const ext = hasExt ? name.slice(dot) : '';
  const stamp = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
  const who = deviceForName(device);
  for (let n = 1; ; n++) {
    const tag = ` (conflicted copy ${stamp} ${who}${n > 1 ? ` ${n}` : ''})`;
    const room = maxBytes - utf8.encode(tag + ext).length;
    if (room < 0) throw new ValidationError('path', 'leaves no room for a conflicted copy name');
    const candidate = `${truncateUtf8(stem, room)}${tag}${ext}`;
    if (!taken(candidate)) return candidate;
  }
}

/**
 * The conflicted copy of a whole workspace path: the same folder, the name from
 * conflictedCopyName, within the protocol's path limits (checked again on the result).
 */
export function conflictedCopyPath(path: FilePath, date: Date, device: string, taken: (candidate: FilePath) => boolean): FilePath {
  const slash = path.lastIndexOf('/');
  const folder = slash < 0 ? '' : path.slice(0, slash + 1);
  const name = path.slice(slash + 1);
  const room = Math.min(MAX_SEGMENT_BYTES, MAX_PATH_BYTES - utf8.encode(folder).length);
  const copy = conflictedCopyName(name, date, device, (candidate) => taken(`${folder}${candidate}` as FilePath), room);
  return parseFilePath(`${folder}${copy}`.normalize('NFC'), 'path');
}

/**
 * The device label as a name part: letters, digits, spaces and `._-` only (no `/`, no
 * brackets that would confuse the tag), at most MAX_DEVICE_BYTES; "device" when nothing is left.
 */
function deviceForName(device: string): string {
  const cleaned = device
    .normalize('NFC')
    .replace(/[^\p{L}\p{M}\p{N} ._-]/gu, '')
    .replace(/\s+/g, ' ')
    .trim();
  return truncateUtf8(cleaned, MAX_DEVICE_BYTES).trim() || 'device';
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

function truncateUtf8(text: string, maxBytes: number): string {
  let out = '';
  let bytes = 0;
  for (const char of text) {
    const size = utf8.encode(char).length;
    if (bytes + size > maxBytes) break;
    out += char;
    bytes += size;
  }
  return out;
}
