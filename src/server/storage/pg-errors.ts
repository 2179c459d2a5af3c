import { StoreUnavailableError } from './store-errors.ts';

/** Socket errors that mean the server cannot be reached right now. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOENT', // a Unix socket that is gone while the server is down
]);

/**
 * SQLSTATEs that say "not now" rather than "wrong query": class 08 (connection exception),
 * admin/crash shutdown and "the database system is starting up" (57P01-57P03), too many
 * connections (53300), and a server in recovery that cannot take writes yet (25006 during a
 * failover, when a standby is briefly read-only).
 */
const UNAVAILABLE_STATES = new Set(['57P01', '57P02', '57P03', '53300', '25006']);

/** Errors pg itself raises when a connection is lost, never set up, or a pool wait times out. */
const PG_CLIENT_MESSAGES = [
  /^Connection terminated/,
  /^timeout exceeded when trying to connect$/,
  /^timeout expired$/, // the client's own connect timeout
  /^Query read timeout$/,
  /is not queryable$/,
];

export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (NETWORK_CODES.has(code) || UNAVAILABLE_STATES.has(code) || code.startsWith('08')) return true;
  }
  if (PG_CLIENT_MESSAGES.some((pattern) => pattern.test(err.message))) return true;
  // AggregateError from a host name that resolves to several addresses, all refusing.
  if (err instanceof AggregateError) return err.errors.some(isConnectionError);
  return false;
}

/** A connection failure as StoreUnavailableError (answered 503 + Retry-After); other errors unchanged. */
export function asStoreError(err: unknown): unknown {
  if (err instanceof StoreUnavailableError || !isConnectionError(err)) return err;
  return new StoreUnavailableError('postgres', `PostgreSQL is unavailable: ${errorMessage(err)}`, { cause: err });
}

/** A readable one-line reason, also for Node's AggregateError (several addresses refused), whose own message is empty. */
export function errorMessage(err: unknown): string {
  if (err instanceof AggregateError && err.message === '') return err.errors.map(errorMessage).join('; ');
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
