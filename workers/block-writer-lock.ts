/// <reference lib="webworker" />

/**
 * Each sync worker writes block files under a temporary directory of its own and holds a
 * Web Lock named after it for as long as it lives. A directory whose lock is free belongs
 * to a worker that is gone (a closed or killed tab), so its half-written files can go.
 */

const PREFIX = 'nearsync:block-writer:';

/** Takes this worker's writer lock; resolves once held (it is released when the worker ends). */
export function holdWriterLock(writerId: string): Promise<void> {
  return new Promise((held) => {
    void navigator.locks.request(PREFIX + writerId, () => {
      held();
      return new Promise<never>(() => undefined);
    });
  });
}

/** Whether no live worker holds `writerId`'s lock. */
export function writerIsGone(writerId: string): Promise<boolean> {
  return navigator.locks.request(PREFIX + writerId, { ifAvailable: true }, (lock) => lock !== null);
}
