import { parseNamespaceId, type NamespaceId } from './api.ts';
import { ValidationError } from './errors.ts';
import { parseFilePath, type FilePath } from './file-path.ts';

/**
 * Every file of a workspace has a URL on the app's origin, answered by the app's service
 * worker: `/w/<namespaceId>/file/<path>`, each path segment percent-encoded on its own, so
 * a "/" inside a segment can never be smuggled in as "%2F".
 */
export const FILE_URL_MARKER = 'file';

export function fileUrlPath(ns: NamespaceId, path: FilePath): string {
  return `/w/${ns}/${FILE_URL_MARKER}/${path.split('/').map(encodeURIComponent).join('/')}`;
}

/** Whether a URL path is a file URL at all (validity is `parseFileUrlPath`'s business). */
export function looksLikeFileUrlPath(pathname: string): boolean {
  return /^\/w\/[^/]+\/file\//.test(pathname);
}

/**
 * The namespace and file a file URL names; throws a ValidationError for anything that is not
 * exactly one valid namespace and one valid path (malformed or encoded separators, "." or
 * ".." segments, control characters, …).
 */
export function parseFileUrlPath(pathname: string): { ns: NamespaceId; path: FilePath } {
  const match = /^\/w\/([^/]+)\/file\/(.+)$/.exec(pathname);
  if (!match) throw new ValidationError('url', `is not a file URL (/w/<workspace>/${FILE_URL_MARKER}/<path>)`);
  const ns = parseNamespaceId(match[1], 'workspace');
  const segments = match[2].split('/').map((raw) => {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      throw new ValidationError('path', 'has malformed percent-encoding');
    }
    if (segment.includes('/') || segment.includes('\\')) throw new ValidationError('path', 'must not contain an encoded separator in a segment');
    return segment;
  });
  return { ns, path: parseFilePath(segments.join('/'), 'path') };
}
