import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { GeneratorCommand, GeneratorReply, GeneratorStats } from './generator-protocol.ts';
import { runCommits, runJournalReads } from './http-load.ts';
import { PollLoad } from './poll-load.ts';
import { RelayLoad } from './relay-load.ts';

/**
 * A load-generator child process of the load bench (forked by generator-pool.ts): it takes
 * commands over IPC, drives HTTP or relay load at the servers, and answers with what it saw.
 * Separate from the servers so its CPU never counts as theirs.
 */

if (typeof process.send !== 'function') {
  console.error('generator.ts is started by the load bench (generator-pool.ts), not by hand');
  process.exit(2);
}

const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
let cpuMark = process.cpuUsage();
let cpuMarkAt = performance.now();
let polls: PollLoad | null = null;
const relay = new RelayLoad();

function stats(reset: boolean): GeneratorStats {
  const used = process.cpuUsage(cpuMark);
  const elapsedMs = performance.now() - cpuMarkAt;
  const result: GeneratorStats = {
    cpuPercent: elapsedMs > 0 ? ((used.user + used.system) / 1000 / elapsedMs) * 100 : 0,
    eventLoopP99Ms: loopDelay.percentile(99) / 1e6,
    eventLoopMaxMs: loopDelay.max / 1e6,
  };
  if (reset) {
    cpuMark = process.cpuUsage();
    cpuMarkAt = performance.now();
    loopDelay.reset();
  }
  return result;
}

async function execute(command: GeneratorCommand): Promise<unknown> {
  switch (command.cmd) {
    case 'polls.start':
      polls ??= new PollLoad(command.waitSeconds);
      return polls.start(command.targets, command.openPerSecond);
    case 'polls.woken':
      if (!polls) throw new Error('no polls started');
      return polls.woken(command.timeoutMs);
    case 'polls.stop': {
      const stopped = polls?.stop() ?? { answers: 0, errors: 0, errorSamples: [] };
      polls = null;
      return stopped;
    }
    case 'sockets.open':
      return relay.open(command.targets, command.concurrency, command.timeoutMs);
    case 'adverts.run':
      return relay.adverts(command.plan);
    case 'sockets.close':
      relay.close();
      return {};
    case 'commits.run':
      return runCommits(command.committers, command.block, command.durationMs, command.label);
    case 'reads.run':
      return runJournalReads(command.readers, command.limit, command.durationMs);
    case 'stats':
      return stats(command.reset);
  }
}

process.on('message', (message: unknown) => {
  const command = message as GeneratorCommand;
  if (typeof command !== 'object' || command === null || typeof command.id !== 'number' || typeof command.cmd !== 'string') return;
  execute(command).then(
    (result): GeneratorReply => ({ id: command.id, ok: true, result }),
    (err: unknown): GeneratorReply => ({ id: command.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  ).then((reply) => process.send?.(reply));
});

// The bench went away (it stops us with a message, or died): close everything and leave.
process.on('disconnect', () => {
  polls?.stop();
  relay.close();
  process.exit(0);
});
