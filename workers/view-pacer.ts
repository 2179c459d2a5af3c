/**
 * Paces the views a workspace session sends to its pages: at most one per interval since the
 * last one, where the interval depends on the change. Progress (bytes arriving, counters, the
 * once-a-second tick) waits longer than a change someone is looking for (their own action, a
 * new role, a question): a request with a shorter interval brings a pending push forward, and
 * the first change after a quiet spell goes out at once.
 *
 * *Why two paces:* each view costs the page a render (a listing fetched from the worker, style,
 * layout, paint, a compositor frame). At five views a second that was about 25 ms of CPU per
 * second in a joining browser (measured from /proc, office-warm), several percent of what the
 * bare data channel costs per GiB, for progress figures nobody reads five times a second.
 */
export class ViewPacer {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private dueAt = Infinity;
  private lastAt = -Infinity;
  private stopped = false;

  constructor(
    private readonly push: () => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A push at most `intervalMs` after the last one (at once if that is past). */
  request(intervalMs: number): void {
    if (this.stopped) return;
    const now = this.now();
    const dueAt = Math.max(now, this.lastAt + intervalMs);
    if (this.timer !== null) {
      if (dueAt >= this.dueAt) return;
      clearTimeout(this.timer);
    }
    this.dueAt = dueAt;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.dueAt = Infinity;
      this.lastAt = this.now();
      this.push();
    }, dueAt - now);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
