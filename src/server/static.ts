import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join, relative, sep, isAbsolute } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { RequestContext } from './context.ts';
import { HttpError } from './http/errors.ts';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
};

/**
 * Serves the built web app (`vite build` output). Files under /assets carry content hashes
 * in their names and are cached for a year; any other path that is not a file gets
 * index.html (the app routes on the client, e.g. /w/<ns>). "." and ".." segments, raw or
 * percent-encoded, are refused before the path touches the file system.
 */
export async function serveStatic(ctx: RequestContext, root: string): Promise<void> {
  const rawPath = ctx.rawPath.split('?')[0];
  const segments: string[] = [];
  for (const raw of rawPath.split('/').slice(1)) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      throw new HttpError(400, 'bad_path', 'malformed percent-encoding in path');
    }
    if (segment === '.' || segment === '..' || /[\\/\u0000]/.test(segment)) {
      throw new HttpError(400, 'bad_path', 'path must not contain ".", ".." or separators in a segment');
    }
    if (segment !== '') segments.push(segment);
  }

  const hidden = segments.some((s) => s.startsWith('.'));
  let file = hidden ? null : await fileAt(root, segments);
  let immutable = segments[0] === 'assets';
  if (!file) {
    if (immutable || hidden) throw new HttpError(404, 'not_found', 'no such file');
    file = await fileAt(root, ['index.html']);
    immutable = false;
    if (!file) throw new HttpError(404, 'not_found', 'the web app is not built (run `npm run build`)');
  }

  const { res, req } = ctx;
  const etag = `W/"${file.size.toString(16)}-${Math.floor(file.mtimeMs).toString(16)}"`;
  res.setHeader('Content-Type', TYPES[extname(file.path).toLowerCase()] ?? 'application/octet-stream');
  res.setHeader('Cache-Control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
  res.setHeader('ETag', etag);
  res.setHeader('Last-Modified', new Date(file.mtimeMs).toUTCString());
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304).end();
    return;
  }
  res.setHeader('Content-Length', file.size);
  res.writeHead(200);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  ctx.stats.bytesOut = file.size;
  await pipeline(createReadStream(file.path), res).catch(() => res.destroy());
}

async function fileAt(root: string, segments: string[]): Promise<{ path: string; size: number; mtimeMs: number } | null> {
  const path = join(root, ...segments);
  const rel = relative(root, path);
  if (rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) return null;
  try {
    const info = await stat(path);
    return info.isFile() ? { path, size: info.size, mtimeMs: info.mtimeMs } : null;
  } catch {
    return null;
  }
}
