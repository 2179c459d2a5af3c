/**
 * Gets the workspace's LAN key, retrying with backoff while the server cannot give it (down,
 * restarting, behind a proxy that fails): LAN peering waits for the key, the daemon's HTTP
 * sync does not. Only `signal` stops it (the daemon is stopping), rejecting with its reason.
 */
export interface LanKeyRetryOptions {
  fetchKey: () => Promise<Uint8Array>;
  signal: AbortSignal;
  /** First wait after a failure; doubles per failure up to maxDelayMs. */
  firstDelayMs?: number;
  maxDelayMs?: number;
  /** Attempt `attempt` (1-based) failed; the next one is in `delayMs`. */
  onFailure?: (attempt: number, error: Error, delayMs: number) => void;
}

export async function fetchLanKeyWithRetry(options: LanKeyRetryOptions): Promise<Uint8Array> {
  const first = options.firstDelayMs ?? 2_000;
  const max = options.maxDelayMs ?? 120_000;
  for (let attempt = 1; ; attempt++) {
    options.signal.throwIfAborted();
    try {
      return await options.fetchKey();
    } catch (error) {
      options.signal.throwIfAborted();
      // Spread so that daemons restarted together by one server outage do not ask in step.
      const base = Math.min(max, first * 2 ** Math.min(attempt - 1, 20));
      const delayMs = Math.round(base * (0.75 + Math.random() * 0.5));
      options.onFailure?.(attempt, error instanceof Error ? error : new Error(String(error)), delayMs);
      await sleep(delayMs, options.signal);
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const done = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', done);
      resolve();
    }, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
