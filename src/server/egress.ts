import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A token bucket shared by every block response: paces the server's block egress to
 * `bytesPerSecond` (to stand in for a WAN link in benchmarks and tests). Callers reserve
 * bytes in FIFO order; a burst of up to `burstBytes` passes without waiting.
 */
export class EgressLimiter {
  /** Monotonic time (ms) at which everything reserved so far has been paid for. */
  private paidUntil = 0;
  private readonly burstMs: number;

  constructor(
    readonly bytesPerSecond: number,
    burstBytes = Math.max(16 * 1024, Math.floor(bytesPerSecond / 20)),
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError('bytesPerSecond must be positive');
    this.burstMs = (burstBytes / bytesPerSecond) * 1000;
  }

  /** Largest piece worth reserving at once (keeps pacing smooth across responses). */
  get sliceBytes(): number {
    return Math.max(1024, Math.min(64 * 1024, Math.floor(this.bytesPerSecond / 50)));
  }

  /** Resolves when `bytes` may be sent. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const now = performance.now();
    const start = Math.max(this.paidUntil, now - this.burstMs);
    this.paidUntil = start + (bytes / this.bytesPerSecond) * 1000;
    const delay = this.paidUntil - now;
    if (delay > 1) await sleep(delay, undefined, { signal });
  }
}
