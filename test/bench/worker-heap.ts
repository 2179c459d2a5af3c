import type { Browser } from 'playwright-core';
import { watchTargets, type AttachedTarget } from './cdp-targets.ts';

/**
 * JS heap of a browser's pages and dedicated workers while something runs: the peak of each
 * target's V8 heap (Runtime.getHeapUsage, sampled), and what the sampling heap profiler finds
 * still alive at the end, by allocating function (attached through cdp-targets.ts).
 */
export interface HeapWatch {
  stop(): Promise<HeapReport[]>;
}

export interface HeapReport {
  type: string;
  url: string;
  peakUsedMiB: number;
  endUsedMiB: number;
  /** Live bytes at the end by allocating function (sampling heap profiler), heaviest first. */
  liveTop: Array<{ fn: string; mib: number }>;
}

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

const WATCHED = new Set(['worker', 'page']);
const MiB = 1024 * 1024;

export async function watchHeaps(browser: Browser, intervalMs = 500): Promise<HeapWatch> {
  const peaks = new Map<AttachedTarget, { peak: number; last: number }>();
  const watch = await watchTargets(browser, WATCHED, async (target) => {
    peaks.set(target, { peak: 0, last: 0 });
    await target.send('HeapProfiler.enable');
    await target.send('HeapProfiler.startSampling', { samplingInterval: 64 * 1024 });
  });
  const sample = async () => {
    for (const [target, heap] of peaks) {
      const usage = (await Promise.race([target.send('Runtime.getHeapUsage'), new Promise((resolve) => setTimeout(resolve, 2_000))]).catch(() => null)) as { usedSize: number } | null;
      if (!usage) continue;
      heap.last = usage.usedSize;
      heap.peak = Math.max(heap.peak, usage.usedSize);
    }
  };
  let sampling = Promise.resolve();
  const timer = setInterval(() => {
    sampling = sampling.then(sample, () => {});
  }, intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      await sampling;
      await sample();
      const reports: HeapReport[] = [];
      for (const [target, heap] of peaks) {
        const stopped = (await target.send('HeapProfiler.stopSampling').catch(() => null)) as { profile: { head: SamplingNode } } | null;
        const byFunction = new Map<string, number>();
        const walk = (node: SamplingNode) => {
          const { functionName, url, lineNumber } = node.callFrame;
          const key = `${functionName || '(anonymous)'} ${url.split('/').pop()}:${lineNumber + 1}`;
          if (node.selfSize > 0) byFunction.set(key, (byFunction.get(key) ?? 0) + node.selfSize);
          node.children.forEach(walk);
        };
        if (stopped) walk(stopped.profile.head);
        reports.push({
          type: target.type,
          url: target.url.split('/').pop() ?? target.url,
          peakUsedMiB: Math.round((heap.peak / MiB) * 10) / 10,
          endUsedMiB: Math.round((heap.last / MiB) * 10) / 10,
          liveTop: [...byFunction]
            .sort((a, b) => b[1] - a[1])
            .slice(0, 12)
            .map(([fn, bytes]) => ({ fn, mib: Math.round((bytes / MiB) * 10) / 10 })),
        });
      }
      await watch.detach();
      return reports;
    },
  };
}
