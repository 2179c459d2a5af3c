/**
 * A token bucket: holds up to `burst` tokens, refills `perSecond` tokens a second, and each
 * event takes one. An empty bucket means the caller is sending faster than allowed.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly perSecond: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(perSecond > 0) || !(burst >= 1)) throw new RangeError('a token bucket needs perSecond > 0 and burst >= 1');
    this.tokens = burst;
    this.last = now();
  }

  /** Takes one token; false (taking nothing) when the bucket is empty. */
  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
