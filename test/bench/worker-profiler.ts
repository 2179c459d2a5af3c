import { writeFile } from 'node:fs/promises';
import type { Browser, CDPSession } from 'playwright-core';

/**
 * V8 CPU profiles of a browser's dedicated workers (the sync worker does the block work, out of
 * reach of page tracing). Playwright has no CDP session for a worker, so this attaches to each
 * worker target from the browser session and talks to it through Target.sendMessageToTarget.
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
  const session: CDPSession = await browser.newBrowserCDPSession();
  const sessions = new Map<string, { sessionId: string; type: string }>();
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
      // A target that went away meanwhile (a worker of a page that navigated) has no session.
      session.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) }).catch(reject);
    });
  const attach = async (targetId: string, type: string) => {
    if (sessions.has(targetId)) return;
    const { sessionId } = (await session.send('Target.attachToTarget', { targetId, flatten: false })) as { sessionId: string };
    sessions.set(targetId, { sessionId, type });
    await send(sessionId, 'Profiler.enable');
    await send(sessionId, 'Profiler.setSamplingInterval', { interval: 500 });
    await send(sessionId, 'Profiler.start');
  };
  session.on('Target.targetCreated', (event: { targetInfo: { targetId: string; type: string } }) => {
    if (PROFILED.has(event.targetInfo.type)) attach(event.targetInfo.targetId, event.targetInfo.type).catch(() => {});
  });
  await session.send('Target.setDiscoverTargets', { discover: true });
  const { targetInfos } = (await session.send('Target.getTargets')) as { targetInfos: Array<{ targetId: string; type: string }> };
  for (const info of targetInfos) if (PROFILED.has(info.type)) await attach(info.targetId, info.type).catch(() => {});

  return {
    async stop(outputPrefix) {
      const results = [];
      let n = 0;
      for (const { sessionId, type } of sessions.values()) {
        const stopped = (await send(sessionId, 'Profiler.stop').catch(() => null)) as { profile: Profile } | null;
        const profile = stopped?.profile;
        if (!profile) continue;
        const file = `${outputPrefix}-${type}${n++}.cpuprofile`;
        await writeFile(file, JSON.stringify(profile));
        results.push({ file, top: heaviest(profile) });
      }
      await session.detach();
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
