/**
 * A token bucket of work units (here: HMAC computations) refilled at a steady rate. Checking
 * a tag costs a few microseconds; a flood of datagrams must not turn that into a busy CPU.
 */
export class WorkBudget {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.refilledAt = now();
  }

  /** Takes `units` if that many are left (after refilling) and says whether it did. */
  take(units: number): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
    if (this.tokens < units) return false;
    this.tokens -= units;
    return true;
  }
}
