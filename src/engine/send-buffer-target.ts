/**
 * How many bytes a sender keeps in a channel's send buffer: enough for `targetMs` at the rate
 * the buffer drains, within [min, max]. Whatever sits in the buffer goes out ahead of anything
 * sent later (a reader's block that jumps the queue), so on a slow channel a fixed 1 MiB is
 * most of a second of waiting, while a fast one needs the full buffer to stay busy.
 */
export class SendBufferTarget {
  /** Bytes per millisecond the buffer drained while it was never empty (null until measured). */
  private rate: number | null = null;
  private last: { at: number; drained: number } | null = null;

  constructor(
    private readonly min: number,
    private readonly max: number,
    private readonly targetMs = 50,
  ) {}

  /**
   * One look at the channel: `queued` is every byte ever handed to it, `buffered` what it still
   * holds. Only intervals during which the buffer held data measure the channel, not the sender.
   */
  sample(now: number, queued: number, buffered: number): void {
    const drained = queued - buffered;
    if (buffered === 0) {
      this.last = null;
      return;
    }
    if (!this.last) {
      this.last = { at: now, drained };
      return;
    }
    const elapsed = now - this.last.at;
    if (elapsed < MIN_INTERVAL_MS) return;
    const measured = Math.max(0, drained - this.last.drained) / elapsed;
    this.rate = this.rate === null ? measured : this.rate * (1 - WEIGHT) + measured * WEIGHT;
    this.last = { at: now, drained };
  }

  /** Stop adding to the buffer above this. */
  get highWaterMark(): number {
    if (this.rate === null) return this.max;
    return Math.round(Math.min(this.max, Math.max(this.min, this.rate * this.targetMs)));
  }

  /** Start adding again once the buffer is down to this. */
  get lowWaterMark(): number {
    return Math.round(this.highWaterMark / 4);
  }
}

/** Shorter intervals are dominated by when the channel happened to hand bytes on. */
const MIN_INTERVAL_MS = 20;
/** The weight of the newest interval: the rate follows a change within a few hundred ms. */
const WEIGHT = 0.25;
