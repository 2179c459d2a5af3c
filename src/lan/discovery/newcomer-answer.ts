/** A newcomer's first advert is answered with ours at once, but not more often than this. */
export const NEWCOMER_ANSWER_INTERVAL_MS = 1_000;

/**
 * Sends our advert soon after a peer we had not heard appears, so it learns of us in
 * milliseconds rather than at our next periodic advert (30 s); newcomers arriving together
 * share one answer, and answers are spaced by `intervalMs`, so a flood of new ids costs at
 * most one datagram a second.
 */
export class NewcomerAnswer {
  private timer: NodeJS.Timeout | null = null;
  private lastAt = 0;

  constructor(
    private readonly send: () => void,
    private readonly intervalMs = NEWCOMER_ANSWER_INTERVAL_MS,
  ) {}

  request(): void {
    if (this.timer) return;
    const wait = Math.max(0, this.lastAt + this.intervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.lastAt = Date.now();
      this.send();
    }, wait);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
