/**
 * Wakes journal long polls when a commit lands. The in-process version serves one server
 * process; a Redis or PostgreSQL LISTEN/NOTIFY implementation can take its place for several.
 */
export interface JournalNotifier {
  /**
   * Resolves true once a commit with sjid > afterSjid lands in `ns`, or false after `ms`
   * or when `signal` aborts. The waiter is registered before wait() returns, so a caller
   * that reads the journal after calling wait() cannot miss a commit.
   */
  wait(ns: string, afterSjid: number, ms: number, signal?: AbortSignal): Promise<boolean>;
  notify(ns: string, sjid: number): void;
}

interface Waiter {
  afterSjid: number;
  wake(notified: boolean): void;
}

export class InProcessJournalNotifier implements JournalNotifier {
  private readonly waiters = new Map<string, Set<Waiter>>();

  wait(ns: string, afterSjid: number, ms: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      let set = this.waiters.get(ns);
      if (!set) this.waiters.set(ns, (set = new Set()));
      const waiter: Waiter = {
        afterSjid,
        wake: (notified) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          set.delete(waiter);
          if (set.size === 0 && this.waiters.get(ns) === set) this.waiters.delete(ns);
          resolve(notified);
        },
      };
      const onAbort = () => waiter.wake(false);
      const timer = setTimeout(() => waiter.wake(false), ms);
      signal?.addEventListener('abort', onAbort, { once: true });
      set.add(waiter);
    });
  }

  notify(ns: string, sjid: number): void {
    const set = this.waiters.get(ns);
    if (!set) return;
    for (const waiter of [...set]) if (sjid > waiter.afterSjid) waiter.wake(true);
  }

  /**
   * Wakes every waiter of every namespace. For a shared notifier whose feed was cut: commits
   * may have landed unseen meanwhile, so each long poll re-reads the journal.
   */
  wakeAll(): void {
    for (const set of [...this.waiters.values()]) for (const waiter of [...set]) waiter.wake(true);
  }

  /** Waiters currently registered (for tests and metrics). */
  get size(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }
}
