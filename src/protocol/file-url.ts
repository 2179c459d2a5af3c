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

/**
 * A zip download the app started (where the browser has no save dialog): the service worker
 * answers `/w/<namespaceId>/zip/<jobId>/<name>` with the archive stream the page handed it
 * for that job, once. The job id is a fresh UUID, so no other site can start a download of a
 * workspace by linking to it; the name is only the file name the browser saves under.
 */
export const ZIP_URL_MARKER = 'zip';

export function zipDownloadPath(ns: NamespaceId, jobId: string, name: string): string {
  return `/w/${ns}/${ZIP_URL_MARKER}/${jobId}/${encodeURIComponent(name)}`;
}

export function looksLikeZipDownloadPath(pathname: string): boolean {
  return /^\/w\/[^/]+\/zip\//.test(pathname);
}

const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Whether a zip job id is what the app makes (a lower-case UUID); anything else is refused. */
export function isZipJobId(value: unknown): value is string {
  return typeof value === 'string' && JOB_ID.test(value);
}

export function parseZipDownloadPath(pathname: string): { ns: NamespaceId; jobId: string; name: string } {
  const match = /^\/w\/([^/]+)\/zip\/([^/]+)\/([^/]+)$/.exec(pathname);
  if (!match) throw new ValidationError('url', `is not a zip download (/w/<workspace>/${ZIP_URL_MARKER}/<job>/<name>)`);
  const ns = parseNamespaceId(match[1], 'workspace');
  if (!isZipJobId(match[2])) throw new ValidationError('job', 'is not a zip job id');
  let name: string;
  try {
    name = decodeURIComponent(match[3]);
  } catch {
    throw new ValidationError('name', 'has malformed percent-encoding');
  }
  if (name.length === 0 || name.length > 255 || /[\/\\\u0000-\u001f]/.test(name)) throw new ValidationError('name', 'is not a file name');
  return { ns, jobId: match[2], name };
}
