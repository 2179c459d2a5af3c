/** Bytes per second over a sliding window, for progress displays. */
export class RateMeter {
  private samples: Array<{ at: number; bytes: number }> = [];
  constructor(private readonly windowMs = 3000) {}

  add(bytes: number, now: number): void {
    this.samples.push({ at: now, bytes });
    this.trim(now);
  }

  bytesPerSecond(now: number): number {
    this.trim(now);
    if (this.samples.length === 0) return 0;
    const total = this.samples.reduce((sum, sample) => sum + sample.bytes, 0);
    const span = Math.max(now - this.samples[0].at, 1000);
    return (total * 1000) / span;
  }

  private trim(now: number): void {
    while (this.samples.length > 0 && now - this.samples[0].at > this.windowMs) this.samples.shift();
  }
}
