/**
 * Runs named jobs one at a time (the folder is touched by one job at once, so the
 * materialiser never writes a path the scanner is committing), coalescing requests:
 * asking for a job that is already queued does nothing, asking during its run queues one
 * more run. `request` delays a job by its debounce so bursts of events become one run.
 */
export class TaskRunner {
  private readonly queued = new Set<string>();
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly jobs: Record<string, () => Promise<void>>,
    private readonly onError: (job: string, error: unknown) => void,
  ) {}

  /**
   * Runs `job` within `delayMs`, without postponing a run already asked for: unlike request(),
   * a steady stream of calls (a block stored every few ms) still lets it run.
   */
  requestWithin(job: string, delayMs: number): void {
    if (this.stopped || this.timers.has(job)) return;
    this.request(job, delayMs);
  }

  request(job: string, debounceMs = 0): void {
    if (this.stopped) return;
    const existing = this.timers.get(job);
    if (existing) clearTimeout(existing);
    this.timers.set(
      job,
      setTimeout(() => {
        this.timers.delete(job);
        this.enqueue(job);
      }, debounceMs),
    );
  }

  /** Runs `job` after whatever is queued, and resolves when it has run. */
  runNow(job: string): Promise<void> {
    this.queued.delete(job);
    return this.enqueue(job, true);
  }

  /** Resolves once every queued job has run; nothing new starts afterwards. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    await this.chain;
  }

  private enqueue(job: string, force = false): Promise<void> {
    if (!force && this.queued.has(job)) return this.chain;
    this.queued.add(job);
    this.chain = this.chain.then(async () => {
      this.queued.delete(job);
      if (this.stopped && !force) return;
      try {
        await this.jobs[job]();
      } catch (error) {
        this.onError(job, error);
      }
    });
    return this.chain;
  }
}
