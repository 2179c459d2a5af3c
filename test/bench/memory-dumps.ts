import type { Browser, CDPSession } from 'playwright-core';

/**
 * Chromium's own accounting of where each process's memory is (memory-infra dumps: malloc,
 * partition_alloc, blink_gc, v8, …), taken on request while something runs, through the
 * browser's CDP Tracing domain. RSS says how much; this says which allocator holds it.
 */
export interface MemoryDumps {
  /** Takes a dump now (returns once Chromium has it). */
  dump(): Promise<void>;
  /** Ends tracing; per dump, per process id, the size of each top-level allocator in MiB. */
  stop(): Promise<Array<Map<number, Record<string, number>>>>;
}

const MiB = 1024 * 1024;

interface TraceEvent {
  ph: string;
  pid: number;
  name?: string;
  id?: string;
  args?: { dumps?: { allocators?: Record<string, { attrs?: { size?: { value: string } } }> }; name?: string };
}

export async function startMemoryDumps(browser: Browser): Promise<MemoryDumps> {
  const session: CDPSession = await browser.newBrowserCDPSession();
  const events: TraceEvent[] = [];
  session.on('Tracing.dataCollected', (event) => {
    events.push(...(event.value as unknown as TraceEvent[]));
  });
  // No periodic dumps (an empty trigger list, which the protocol's types do not describe): only those asked for.
  const start = {
    transferMode: 'ReportEvents',
    traceConfig: { includedCategories: ['disabled-by-default-memory-infra'], excludedCategories: ['*'], memoryDumpConfig: { triggers: [] } },
  };
  await session.send('Tracing.start', start as never);
  return {
    async dump() {
      await session.send('Tracing.requestMemoryDump', { deterministic: false, levelOfDetail: 'detailed' });
    },
    async stop() {
      const done = new Promise<void>((resolve) => session.once('Tracing.tracingComplete', () => resolve()));
      await session.send('Tracing.end');
      await done;
      await session.detach().catch(() => {});
      const byDump = new Map<string, Map<number, Record<string, number>>>();
      for (const event of events) {
        if (event.ph !== 'v' || !event.args?.dumps?.allocators) continue;
        const sizes: Record<string, number> = {};
        for (const [name, dump] of Object.entries(event.args.dumps.allocators)) {
          // Top-level allocators, their first level below, and PartitionAlloc's partitions (array_buffer, buffer, fast_malloc, layout).
          const depth = name.split('/').length;
          if (!dump.attrs?.size || (depth > 2 && !(depth === 3 && name.startsWith('partition_alloc/partitions/')))) continue;
          sizes[name] = Math.round((parseInt(dump.attrs.size.value, 16) / MiB) * 10) / 10;
        }
        const id = event.id ?? '?';
        if (!byDump.has(id)) byDump.set(id, new Map());
        byDump.get(id)!.set(event.pid, sizes);
      }
      return [...byDump.values()];
    },
  };
}
