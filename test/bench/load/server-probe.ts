import { monitorEventLoopDelay } from 'node:perf_hooks';

/**
 * Preloaded (`node --import`) into each server child of the load bench, never into a real
 * server: answers the bench over the IPC channel with the server's event-loop delay and
 * heap, which /proc cannot show, and takes the server down when the bench goes away.
 *
 * Messages in:  { probe: 'read', reset: boolean, gc: boolean }
 * Messages out: { probe: 'reading', eventLoop: { p50Ms, p99Ms, maxMs }, heapUsedBytes, rssBytes }
 */

if (typeof process.send === 'function') {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const gc = (globalThis as { gc?: () => void }).gc;

  process.on('message', (message: unknown) => {
    if (typeof message !== 'object' || message === null || (message as { probe?: unknown }).probe !== 'read') return;
    const { reset, gc: collect } = message as { reset?: unknown; gc?: unknown };
    // A collection first, so RSS and heap readings count live objects rather than garbage.
    if (collect === true && gc) gc();
    const reading = {
      probe: 'reading',
      eventLoop: {
        p50Ms: delay.percentile(50) / 1e6,
        p99Ms: delay.percentile(99) / 1e6,
        maxMs: delay.max / 1e6,
      },
      heapUsedBytes: process.memoryUsage().heapUsed,
      rssBytes: process.memoryUsage.rss(),
    };
    if (reset === true) delay.reset();
    process.send?.(reading);
  });
  // The bench died without stopping us (SIGKILL, crash): stop the way `npm start` stops.
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
  // The channel must not keep a server alive on its own; the listening socket does that.
  process.channel?.unref();
}
