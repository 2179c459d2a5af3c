/**
 * A back end (database, object store, Redis) cannot be reached right now. Requests that hit
 * one answer 503 with Retry-After, so clients back off and retry instead of giving up; the
 * stores themselves reconnect on their own.
 */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  constructor(
    /** Which engine, for the log and the error body: 'postgres', 's3', 'redis'. */
    readonly engine: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
