/**
 * Keeps only the newest of views that arrive faster than the screen refreshes and renders
 * it once per frame. Hidden tabs get no animation frames, so they render on a timer instead:
 * their DOM must still follow the state (another tab may be the one syncing).
 */
export class LatestValueRenderer<T> {
  private pending: T | null = null;
  private scheduled = false;
  private stopped = false;

  constructor(private readonly render: (value: T) => void) {}

  push(value: T): void {
    if (this.stopped) return;
    this.pending = value;
    if (this.scheduled) return;
    this.scheduled = true;
    if (document.hidden) setTimeout(() => this.flush(), 250);
    else requestAnimationFrame(() => this.flush());
  }

  stop(): void {
    this.stopped = true;
    this.pending = null;
  }

  private flush(): void {
    this.scheduled = false;
    const value = this.pending;
    this.pending = null;
    if (value !== null && !this.stopped) this.render(value);
  }
}
