/**
 * A counting semaphore: at most `size` holders at once, the others wait in arrival order.
 * Bounds what is held in memory at once: blocks the LAN bridge assembles, uploads the S3 store buffers.
 */
export class Slots {
  private held = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError('Slots needs a size of at least 1');
  }

  /** Resolves with a release function once a slot is free; call it exactly once. */
  async acquire(): Promise<() => void> {
    if (this.held < this.size) this.held += 1;
    // A released slot passes straight to the waiter, so `held` stays counted.
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.held -= 1;
    };
  }

  get inUse(): number {
    return this.held;
  }
}
