import type { IncomingMessage } from 'node:http';
import { isTokenFormat, type NamespaceId } from '../protocol/index.ts';
import type { ServerDeps } from './context.ts';
import type { MetadataStore } from './storage/metadata-store.ts';
import { HttpError } from './http/errors.ts';
import { sha256Hex } from './ids.ts';

function unauthorized(message: string, challenge: string): HttpError {
  return new HttpError(401, 'unauthorized', message, { headers: { 'WWW-Authenticate': challenge } });
}

/** The namespace of a well-formed member token, or null when it is unknown. Tokens are stored, and looked up, as SHA-256 hashes. */
export async function namespaceOfToken(metadata: MetadataStore, token: string): Promise<NamespaceId | null> {
  const member = await metadata.authenticate(sha256Hex(token));
  return member ? member.namespaceId : null;
}

/** The namespace of the request's bearer token; 401 when the token is missing, malformed or unknown. */
export async function authenticate(req: IncomingMessage, deps: ServerDeps): Promise<NamespaceId> {
  const header = req.headers.authorization;
  if (header === undefined) throw unauthorized('an Authorization: Bearer token is required', 'Bearer realm="nearsync"');
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (!match || !isTokenFormat(match[1])) {
    throw unauthorized('malformed bearer token', 'Bearer realm="nearsync", error="invalid_token"');
  }
  const ns = await namespaceOfToken(deps.metadata, match[1]);
  if (!ns) throw unauthorized('unknown token', 'Bearer realm="nearsync", error="invalid_token"');
  return ns;
}

/** Like authenticate(), and 403 unless the token belongs to namespace `ns`. */
export async function requireMember(req: IncomingMessage, deps: ServerDeps, ns: string): Promise<NamespaceId> {
  const own = await authenticate(req, deps);
  if (own !== ns) throw new HttpError(403, 'forbidden', 'this token is not a member of that workspace');
  return own;
}
