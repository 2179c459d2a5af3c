import type { IncomingMessage } from 'node:http';
import { HttpError } from './errors.ts';
import { readBody } from './read-body.ts';

/** Largest JSON request body (a commit of 65,536 block hashes is about 4.5 MB). */
export const MAX_JSON_BODY = 5 * 1024 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads and parses a JSON request body: 415 for other media types, 413 past the limit, 400 bad_json. */
export async function readJson(req: IncomingMessage, limit = MAX_JSON_BODY): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') {
    throw new HttpError(415, 'unsupported_media_type', 'request body must be application/json');
  }
  const chunks: Buffer[] = [];
  await readBody(req, limit, (chunk) => {
    chunks.push(chunk);
  });
  let text: string;
  try {
    text = utf8.decode(Buffer.concat(chunks));
  } catch {
    throw new HttpError(400, 'bad_json', 'request body is not valid UTF-8');
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, 'bad_json', `request body is not valid JSON: ${(err as Error).message}`);
  }
}
