/**
 * What a file is served as from its URL on the app's origin (the service worker's file URLs)
 * and from a blob: URL (the Open button). That origin holds every workspace's token, so a
 * teammate's HTML, SVG, XML or script must never run there: types that can run script are
 * served as plain text (their source shown), unknown types as a download.
 */
const TEXT = 'text/plain;charset=utf-8';

/** Types a browser shows without running script from the file. */
const INLINE_TYPES: Record<string, string> = {
  txt: TEXT,
  md: TEXT,
  csv: TEXT,
  log: TEXT,
  json: TEXT,
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  pdf: 'application/pdf',
  mp3: 'audio/mpeg',
  wav: 'audio/wav',
  ogg: 'audio/ogg',
  m4a: 'audio/mp4',
  mp4: 'video/mp4',
  webm: 'video/webm',
};

/** Types that can carry script (markup, stylesheets, code): shown as their text, never rendered. */
const SCRIPTABLE_EXTENSIONS = new Set(['html', 'htm', 'xhtml', 'shtml', 'svg', 'svgz', 'xml', 'xsl', 'xslt', 'js', 'mjs', 'cjs', 'ts', 'css', 'mht', 'mhtml']);

function extensionOf(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
}

/** The blob: URL rule: an inline type, else `application/octet-stream` (the browser downloads it). */
export function inlineTypeFor(path: string): string {
  return INLINE_TYPES[extensionOf(path)] ?? 'application/octet-stream';
}

export interface ServedType {
  contentType: string;
  /** `attachment`: the browser saves the file instead of showing it. */
  disposition: 'inline' | 'attachment';
}

/** The file URL rule: inline types as themselves, scriptable ones as text, the rest as a download. */
export function servedTypeFor(path: string): ServedType {
  const extension = extensionOf(path);
  const inline = INLINE_TYPES[extension];
  if (inline) return { contentType: inline, disposition: 'inline' };
  if (SCRIPTABLE_EXTENSIONS.has(extension)) return { contentType: TEXT, disposition: 'inline' };
  return { contentType: 'application/octet-stream', disposition: 'attachment' };
}
