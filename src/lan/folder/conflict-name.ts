import { MAX_SEGMENT_BYTES } from '../../protocol/index.ts';

const utf8 = new TextEncoder();

/**
 * `name (conflicted copy 2024-05-01 142233 host).ext`, the name under which a local
 * version is kept when a different version of its path arrives. `taken` says whether a
 * candidate exists already; a counter is added until one is free.
 */
export function conflictedCopyName(name: string, date: Date, host: string, taken: (candidate: string) => boolean): string {
  const dot = name.lastIndexOf('.');
  const hasExt = dot > 0 && dot < name.length - 1;
  const stem = hasExt ? name.slice(0, dot) : name;
  const ext = hasExt ? name.slice(dot) : '';
  const stamp = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
  const safeHost = host.replace(/[^A-Za-z0-9._-]/g, '').slice(0, 40) || 'peer';
  for (let n = 1; ; n++) {
    const tag = ` (conflicted copy ${stamp} ${safeHost}${n > 1 ? ` ${n}` : ''})`;
    const candidate = `${truncateUtf8(stem, MAX_SEGMENT_BYTES - utf8.encode(tag + ext).length)}${tag}${ext}`;
    if (!taken(candidate)) return candidate;
  }
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
