import { StoreUnavailableError } from './store-errors.ts';

/** Node socket errors that mean "no answer from the endpoint right now", not "the request is wrong". */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** Error names S3 and its look-alikes use when asking a client to slow down. */
const THROTTLING_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestTimeout',
  'RequestTimeoutException',
]);

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  cause?: unknown;
}

/** The HTTP status S3 answered with, or undefined when no response arrived. */
export function s3Status(err: unknown): number | undefined {
  const status = (err as SdkErrorShape | null)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : undefined;
}

/** True for S3's "no such object" answers (GetObject says NoSuchKey, HeadObject only 404). */
export function isS3NotFound(err: unknown): boolean {
  const name = (err as SdkErrorShape | null)?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || s3Status(err) === 404;
}

/**
 * Whether an S3 failure is worth retrying later: no response at all (refused, reset, timed
 * out, DNS), a 5xx, or throttling. Anything else (403, a malformed request) is a fault of
 * this server's configuration or code and must not hide behind a 503.
 */
export function isS3Unavailable(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false;
  const shape = err as SdkErrorShape;
  const status = s3Status(err);
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  if (typeof shape.name === 'string' && (THROTTLING_NAMES.has(shape.name) || shape.name === 'TimeoutError')) return true;
  if (typeof shape.code === 'string' && NETWORK_CODES.has(shape.code)) return true;
  // Aggregate errors (e.g. happy-eyeballs connects to several addresses) carry the socket code inside.
  if (err instanceof AggregateError) return err.errors.some(isS3Unavailable);
  return shape.cause !== undefined && shape.cause !== err && isS3Unavailable(shape.cause);
}

/** Rethrows transient S3 failures as StoreUnavailableError (answered 503); others unchanged. */
export function asStoreError(err: unknown, doing: string): unknown {
  if (err instanceof StoreUnavailableError || !isS3Unavailable(err)) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new StoreUnavailableError('s3', `${doing}: ${detail}`, { cause: err });
}
