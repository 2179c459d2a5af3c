/**
 * An in-process readers-writer lock between commits (shared: any number at once) and block
 * GC batches (exclusive). Writer-preferring: once GC asks, new commits wait behind it, so a
 * steady stream of commits cannot starve GC; GC holds it only for one batch of deletions.
 * The SQLite store uses it; PostgreSQL has advisory locks for the same job across instances.
 */
export class CommitGate {
  private readers = 0;
  private writer = false;
  private readonly waitingWriters: Array<() => void> = [];
  private waitingReaders: Array<() => void> = [];

  async shared<T>(work: () => Promise<T>): Promise<T> {
    if (this.writer || this.waitingWriters.length > 0) await new Promise<void>((resolve) => this.waitingReaders.push(resolve));
    else this.readers += 1;
    try {
      return await work();
    } finally {
      this.readers -= 1;
      if (this.readers === 0) this.wakeWriter();
    }
  }

  async exclusive<T>(work: () => Promise<T>): Promise<T> {
    if (this.writer || this.readers > 0) await new Promise<void>((resolve) => this.waitingWriters.push(resolve));
    else this.writer = true;
    try {
      return await work();
    } finally {
      this.writer = false;
      if (this.waitingWriters.length > 0) this.wakeWriter();
      else this.wakeReaders();
    }
  }

  /** Hands the lock to the next writer (counted as holding before it resumes). */
  private wakeWriter(): void {
    const next = this.waitingWriters.shift();
    if (!next) return;
    this.writer = true;
    next();
  }

  private wakeReaders(): void {
    const waking = this.waitingReaders;
    this.waitingReaders = [];
    this.readers += waking.length;
    for (const resume of waking) resume();
  }
}
