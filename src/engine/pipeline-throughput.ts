/**
 * Smoothed throughput of a source that keeps several requests in flight. Requests overlap,
 * so a block's own duration includes its wait in the source's queue: measure instead from
 * the later of its start and the previous block's end. On a busy pipeline that is the time
 * the source spent on this block.
 */
export class PipelineThroughput {
  private rate = 0;
  private lastDoneAt = 0;
  private count = 0;
  private total = 0;

  /** `smoothing`: weight of the newest sample in the average (0 … 1). */
  constructor(private readonly smoothing = 0.3) {}

  /** `blocks`: how many blocks the `length` bytes were (a batch is one sample of several). */
  record(length: number, startedAt: number, doneAt: number, blocks = 1): void {
    const elapsedMs = Math.max(1, doneAt - Math.max(startedAt, this.lastDoneAt));
    const sample = (length * 1000) / elapsedMs;
    this.rate = this.count === 0 ? sample : this.rate + this.smoothing * (sample - this.rate);
    this.lastDoneAt = doneAt;
    this.count += blocks;
    this.total += length;
  }

  /** Bytes per second; 0 until a block arrived. */
  get bytesPerSecond(): number {
    return this.rate;
  }

  get blocks(): number {
    return this.count;
  }

  get bytes(): number {
    return this.total;
  }
}
