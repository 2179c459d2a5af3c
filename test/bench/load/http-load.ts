import { parseJournalPage, type Cursor } from '../../../src/protocol/index.ts';
import type { Credentials, RequestLoadResult } from './generator-protocol.ts';
import { requestJson, unboundedAgent } from './http-client.ts';

const REQUEST_TIMEOUT_MS = 30_000;
const MAX_ERROR_SAMPLES = 5;

/** Runs `workers` request loops until `durationMs` has passed; each loop waits for its answer before the next request. */
async function closedLoop(
  workers: number,
  durationMs: number,
  once: (worker: number, round: number) => Promise<number>,
): Promise<RequestLoadResult> {
  const result: RequestLoadResult = { ok: 0, failed: 0, latenciesMs: [], elapsedMs: 0, entries: 0, errorSamples: [] };
  const began = performance.now();
  const loop = async (worker: number) => {
    for (let round = 0; performance.now() - began < durationMs; round++) {
      const sent = performance.now();
      try {
        // Not `+= await`: that reads the total before awaiting, and concurrent loops would overwrite each other.
        const entries = await once(worker, round);
        result.entries += entries;
        result.ok++;
        result.latenciesMs.push(Math.round((performance.now() - sent) * 100) / 100);
      } catch (err) {
        result.failed++;
        if (result.errorSamples.length < MAX_ERROR_SAMPLES) result.errorSamples.push(err instanceof Error ? err.message : String(err));
        // A failing server must not turn the loop into a busy spin.
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, (_, worker) => loop(worker)));
  result.elapsedMs = performance.now() - began;
  return result;
}

/**
 * One committer per credential, each committing small one-block files (the block is already
 * on the server) back to back, for `durationMs`. Paths are unique per generator run (`label`).
 */
export async function runCommits(
  committers: Credentials[],
  block: { hash: string; size: number },
  durationMs: number,
  label: string,
): Promise<RequestLoadResult> {
  const agent = unboundedAgent();
  try {
    return await closedLoop(committers.length, durationMs, async (worker, round) => {
      const { url, ns, token } = committers[worker];
      const json = { path: `load/${label}/c${worker}/f${round}.txt`, size: block.size, mtime: 1_700_000_000_000 + round, blocks: [block.hash] };
      const res = await requestJson(agent, url, 'POST', `/api/v1/ns/${ns}/commit`, { token, json, timeoutMs: REQUEST_TIMEOUT_MS });
      const sjid = (res.body as { sjid?: unknown } | undefined)?.sjid;
      if (res.status !== 200 || !Number.isSafeInteger(sjid)) throw new Error(`commit: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
      return 0;
    });
  } finally {
    agent.destroy();
  }
}

/** One reader per credential, each reading the journal's first page (`limit` entries) back to back. */
export async function runJournalReads(readers: Credentials[], limit: number, durationMs: number): Promise<RequestLoadResult> {
  const agent = unboundedAgent();
  try {
    return await closedLoop(readers.length, durationMs, async (worker) => {
      const { url, ns, token } = readers[worker];
      const res = await requestJson(agent, url, 'GET', `/api/v1/ns/${ns}/journal?cursor=0&limit=${limit}`, { token, timeoutMs: REQUEST_TIMEOUT_MS });
      if (res.status !== 200) throw new Error(`journal: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
      const page = parseJournalPage(res.body, 0 as Cursor);
      if (page.entries.length === 0) throw new Error('journal: an empty first page');
      return page.entries.length;
    });
  } finally {
    agent.destroy();
  }
}
