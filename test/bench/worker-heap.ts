import type { Browser, CDPSession } from 'playwright-core';

/**
 * JS heap of a browser's pages and dedicated workers while something runs: the peak of each
 * target's V8 heap (Runtime.getHeapUsage, sampled), and what the sampling heap profiler finds
 * still alive at the end, by allocating function. Attached from the browser's CDP session, as
 * worker-profiler.ts does (Playwright has no session for a worker).
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
  const session: CDPSession = await browser.newBrowserCDPSession();
  const targets = new Map<string, { sessionId: string; type: string; url: string; peak: number; last: number }>();
  let nextId = 1;
  const pending = new Map<number, (result: unknown) => void>();
  session.on('Target.receivedMessageFromTarget', (event: { sessionId: string; message: string }) => {
    const message = JSON.parse(event.message) as { id?: number; result?: unknown };
    if (message.id !== undefined) pending.get(message.id)?.(message.result);
  });
  const send = (sessionId: string, method: string, params: object = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, resolve);
      session.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) }).catch(reject);
    });
  const attach = async (targetId: string, type: string, url: string) => {
    if (targets.has(targetId)) return;
    const { sessionId } = (await session.send('Target.attachToTarget', { targetId, flatten: false })) as { sessionId: string };
    targets.set(targetId, { sessionId, type, url, peak: 0, last: 0 });
    await send(sessionId, 'HeapProfiler.enable');
    await send(sessionId, 'HeapProfiler.startSampling', { samplingInterval: 64 * 1024 });
  };
  session.on('Target.targetCreated', (event: { targetInfo: { targetId: string; type: string; url: string } }) => {
    if (WATCHED.has(event.targetInfo.type)) attach(event.targetInfo.targetId, event.targetInfo.type, event.targetInfo.url).catch(() => {});
  });
  await session.send('Target.setDiscoverTargets', { discover: true });
  const { targetInfos } = (await session.send('Target.getTargets')) as { targetInfos: Array<{ targetId: string; type: string; url: string }> };
  for (const info of targetInfos) if (WATCHED.has(info.type)) await attach(info.targetId, info.type, info.url).catch(() => {});
  const sample = async () => {
    for (const target of targets.values()) {
      const usage = (await Promise.race([send(target.sessionId, 'Runtime.getHeapUsage'), new Promise((resolve) => setTimeout(resolve, 2_000))]).catch(() => null)) as { usedSize: number } | null;
      if (!usage) continue;
      target.last = usage.usedSize;
      target.peak = Math.max(target.peak, usage.usedSize);
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
      for (const target of targets.values()) {
        const stopped = (await send(target.sessionId, 'HeapProfiler.stopSampling').catch(() => null)) as { profile: { head: SamplingNode } } | null;
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
          peakUsedMiB: Math.round((target.peak / MiB) * 10) / 10,
          endUsedMiB: Math.round((target.last / MiB) * 10) / 10,
          liveTop: [...byFunction]
            .sort((a, b) => b[1] - a[1])
            .slice(0, 12)
            .map(([fn, bytes]) => ({ fn, mib: Math.round((bytes / MiB) * 10) / 10 })),
        });
      }
      await session.detach().catch(() => {});
      return reports;
    },
  };
}
