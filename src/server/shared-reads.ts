/**
 * Lets concurrent identical reads share one database query. When a commit wakes a
 * namespace's long polls, all of them re-read the same page at once; with thousands of
 * polls that is thousands of identical queries queued on one connection pool.
 *
 * A caller only joins a read that started at or after the moment it names (`notBefore`):
 * a poll woken by a commit must see that commit, so it never takes the answer of a read
 * that began before it woke.
 */
export class SharedReads<T> {
  private readonly inFlight = new Map<string, { started: number; result: Promise<T> }>();

  read(key: string, notBefore: number, load: () => Promise<T>): Promise<T> {
    const current = this.inFlight.get(key);
    if (current && current.started >= notBefore) return current.result;
    const started = performance.now();
    const result = load();
    const entry = { started, result };
    this.inFlight.set(key, entry);
    const forget = () => {
      if (this.inFlight.get(key) === entry) this.inFlight.delete(key);
    };
    result.then(forget, forget);
    return result;
  }

  /** Reads in flight now (for tests). */
  get size(): number {
    return this.inFlight.size;
  }
}
