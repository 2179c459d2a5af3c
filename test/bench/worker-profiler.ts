import { writeFile } from 'node:fs/promises';
import type { Browser } from 'playwright-core';
import { watchTargets } from './cdp-targets.ts';

/**
 * V8 CPU profiles of a browser's dedicated workers (the sync worker does the block work, out of
 * reach of page tracing), attached through cdp-targets.ts.
 * Writes one .cpuprofile per worker (open in Chrome DevTools) and returns the heaviest
 * functions by self time.
 */
export interface WorkerProfiler {
  stop(outputPrefix: string): Promise<Array<{ file: string; top: Array<{ fn: string; selfMs: number }> }>>;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

/** Dedicated workers (the sync worker) and pages (the main thread: long tasks). */
const PROFILED = new Set(['worker', 'page']);

export async function profileWorkers(browser: Browser): Promise<WorkerProfiler> {
  const watch = await watchTargets(browser, PROFILED, async (target) => {
    await target.send('Profiler.enable');
    await target.send('Profiler.setSamplingInterval', { interval: 500 });
    await target.send('Profiler.start');
  });
  return {
    async stop(outputPrefix) {
      const results = [];
      let n = 0;
      for (const { type, send } of watch.targets) {
        const stopped = (await send('Profiler.stop').catch(() => null)) as { profile: Profile } | null;
        const profile = stopped?.profile;
        if (!profile) continue;
        const file = `${outputPrefix}-${type}${n++}.cpuprofile`;
        await writeFile(file, JSON.stringify(profile));
        results.push({ file, top: heaviest(profile) });
      }
      await watch.detach();
      return results;
    },
  };
}

export function heaviest(profile: Profile, count = 25): Array<{ fn: string; selfMs: number }> {
  const byNode = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  samples.forEach((nodeId, i) => byNode.set(nodeId, (byNode.get(nodeId) ?? 0) + (deltas[i] ?? 0) / 1000));
  const byFunction = new Map<string, number>();
  for (const node of profile.nodes) {
    const ms = byNode.get(node.id) ?? 0;
    if (ms === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const key = `${functionName || '(anonymous)'} ${url.split('/').pop()}:${lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + ms);
  }
  return [...byFunction.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([fn, selfMs]) => ({ fn, selfMs: Math.round(selfMs) }));
}
