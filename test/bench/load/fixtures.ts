import { api, createWorkspace, makeBlock, putBlock, type Member, type TestBlock } from '../../integration/helpers.ts';
import type { Credentials } from './generator-protocol.ts';

/**
 * Workspaces, blocks and journal entries a scenario needs before it measures, made through
 * the public HTTP API of one instance (the test helpers), outside every measurement window.
 */

/** `count` fresh workspaces, created `concurrency` at a time. */
export async function createWorkspaces(url: string, count: number, concurrency = 16): Promise<Member[]> {
  const members: Member[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      members[i] = await createWorkspace(url, `load ${i}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return members;
}

/**
 * A small block, uploaded to every instance (each keeps block files in its own data dir);
 * every benchmark commit names it ("blocks already uploaded").
 */
export async function uploadSmallBlock(urls: string[], member: Member, bytes = 1024): Promise<TestBlock> {
  const block = makeBlock(bytes);
  for (const url of urls) await putBlock(url, member.token, block);
  return block;
}

/** Appends `entries` one-block files to a namespace (for journal page reads), `concurrency` at a time. */
export async function seedJournal(url: string, member: Member, block: TestBlock, entries: number, concurrency = 8): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < entries) {
      const i = next++;
      const res = await api(url, 'POST', `/api/v1/ns/${member.ns}/commit`, {
        token: member.token,
        json: { path: `seed/f${i}.txt`, size: block.bytes.length, mtime: 1_700_000_000_000, blocks: [block.hash] },
      });
      if (res.status !== 200) throw new Error(`seed commit: ${res.status} ${JSON.stringify(res.body)}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, entries) }, worker));
}

/** Commits one small file to each namespace: wakes every long poll waiting on them. */
export async function commitToEach(urls: string[], members: Member[], block: TestBlock): Promise<void> {
  await Promise.all(
    members.map(async (member, i) => {
      const url = urls[i % urls.length];
      const res = await api(url, 'POST', `/api/v1/ns/${member.ns}/commit`, {
        token: member.token,
        json: { path: 'wake.txt', size: block.bytes.length, mtime: 1_700_000_000_000, blocks: [block.hash] },
      });
      if (res.status !== 200) throw new Error(`wake commit: ${res.status} ${JSON.stringify(res.body)}`);
    }),
  );
}

export function credentials(url: string, member: Member): Credentials {
  return { url, ns: member.ns, token: member.token };
}

/** Server counters (GET /api/v1/metrics) that the scenarios wait on. */
export async function serverMetrics(url: string): Promise<{ journalLongPollsOpen: number; relaySockets: number; commits: number }> {
  const res = await api(url, 'GET', '/api/v1/metrics');
  if (res.status !== 200) throw new Error(`metrics: ${res.status}`);
  return res.body;
}
