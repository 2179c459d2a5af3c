/**
 * Everything the bench must undo (child processes, a PostgreSQL schema, Redis keys), in
 * reverse order of creation, once, even when a scenario fails or the bench is interrupted.
 */
export class Teardown {
  private steps: Array<{ name: string; undo: () => Promise<void>; killNow?: () => void }> = [];

  constructor(private readonly log: (message: string) => void) {}

  /**
   * A teardown of its own for part of the run (one deployment), to undo early; whatever it
   * still holds is undone with this one (an interrupted run drops that deployment's schema too).
   */
  scope(name: string): Teardown {
    const child = new Teardown(this.log);
    this.add(name, () => child.runAll(), () => child.killAllNow());
    return child;
  }

  /** Registers an undo step; the returned function runs it early (and forgets it). */
  add(name: string, undo: () => Promise<void>, killNow?: () => void): () => Promise<void> {
    const step = { name, undo, killNow };
    this.steps.push(step);
    return async () => {
      this.steps = this.steps.filter((s) => s !== step);
      await undo();
    };
  }

  /** Runs every step, newest first; a failing or hanging step is reported and the rest still run. */
  async runAll(stepTimeoutMs = 20_000): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const step of steps) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          step.undo(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error('timed out')), stepTimeoutMs);
          }),
        ]);
      } catch (err) {
        this.log(`teardown of ${step.name} failed: ${err instanceof Error ? err.message : String(err)}`);
        step.killNow?.();
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** For a process exit handler, which cannot wait: kill what can be killed at once. */
  killAllNow(): void {
    for (const step of this.steps) step.killNow?.();
  }
}
