import { conflictedCopyPath, type CommitRequest, type FilePath, type NamespaceId, type VersionEntry } from '../protocol/index.ts';
import { CommitConflictError } from './commit-conflict.ts';
import type { LocalBlockStore, UploadApi } from './types.ts';
import { commitBatchWithBlocks, commitWithBlocks } from './commit-with-blocks.ts';

/**
 * Conditional commits that never lose a version. Each commit names as its `parent` the live
 * entry this device knows for the path (0 for a path it knows as not live). When another
 * device got there first (409 `conflict`), this device's version is committed again under
 * `name (conflicted copy <date> <time> <device>).ext` as a new path (parent 0), so both
 * versions stay in the workspace and everyone sees the copy.
 */
export interface ConditionalCommits {
  /** The sjid of the live entry this device knows for `path`; 0 when it knows none. */
  parentOf(path: FilePath): number | Promise<number>;
  /** This device's label, in the copy's name (the same label the commits carry). */
  device: string;
  /** The copy's date and time (the device's local clock). */
  now?: () => Date;
}

/** Where a version landed: its own path, or a conflicted copy of it. */
export interface KeptVersion {
  sjid: number;
  path: FilePath;
  /** True when another version held the path and this one went to a conflicted copy. */
  conflicted: boolean;
}

/** Tries for a free copy name: each try that finds its name taken (a copy made meanwhile) costs one. */
const COPY_ATTEMPTS = 8;

/**
 * commitWithBlocks with `parent` set from `conditions`; on a conflict the version goes to a
 * conflicted copy. A version identical to the live one needs no copy: its entry is the
 * answer. A deletion that conflicts is not retried (the other device's version survives):
 * the CommitConflictError reaches the caller.
 */
export async function commitKeepingBoth(
  ns: NamespaceId,
  request: CommitRequest,
  api: UploadApi,
  store: LocalBlockStore,
  conditions: ConditionalCommits,
): Promise<KeptVersion> {
  const tried = new Set<FilePath>();
  let attempt: CommitRequest = { ...request, parent: await conditions.parentOf(request.path) };
  for (let tries = 0; ; tries++) {
    try {
      const sjid = await commitWithBlocks(ns, attempt, api, store);
      return { sjid, path: attempt.path, conflicted: attempt.path !== request.path };
    } catch (error) {
      if (!(error instanceof CommitConflictError) || tries >= COPY_ATTEMPTS) throw error;
      const resolved = resolveConflict(request, attempt, error.current, tried, conditions);
      if (resolved === null) throw error;
      if ('sjid' in resolved) return resolved;
      attempt = resolved.retry;
    }
  }
}

/**
 * commitBatchWithBlocks with every `parent` set from `conditions`. A conflict refuses the
 * whole batch; the element it names goes to a conflicted copy (or drops out when the live
 * version is the same) and the batch is sent again, so each conflict costs a round trip.
 * Returns, per request, where it landed.
 */
export async function commitBatchKeepingBoth(
  ns: NamespaceId,
  requests: readonly CommitRequest[],
  api: UploadApi,
  store: LocalBlockStore,
  conditions: ConditionalCommits,
): Promise<KeptVersion[]> {
  const results: (KeptVersion | null)[] = requests.map(() => null);
  const tried = new Set<FilePath>();
  // Elements still to send, by their index in `requests`.
  let pending: { index: number; attempt: CommitRequest }[] = await Promise.all(
    requests.map(async (request, index) => ({ index, attempt: { ...request, parent: await conditions.parentOf(request.path) } })),
  );
  for (let tries = 0; pending.length > 0; tries++) {
    try {
      const sjids = await commitBatchWithBlocks(
        ns,
        pending.map((item) => item.attempt),
        api,
        store,
      );
      pending.forEach(({ index, attempt }, i) => {
        results[index] = { sjid: sjids[i], path: attempt.path, conflicted: attempt.path !== requests[index].path };
      });
      pending = [];
    } catch (error) {
      if (!(error instanceof CommitConflictError) || tries >= requests.length + COPY_ATTEMPTS) throw error;
      const item = pending[error.index];
      const resolved = resolveConflict(requests[item.index], item.attempt, error.current, tried, conditions);
      if (resolved === null) throw error;
      if ('sjid' in resolved) {
        results[item.index] = resolved;
        pending = pending.filter((_, i) => i !== error.index);
      } else {
        item.attempt = resolved.retry;
      }
    }
  }
  return results.map((result) => result!);
}

/**
 * What to do about one conflicted element: nothing when the live entry holds the same bytes
 * (this version is already there), else the same version under a conflicted-copy path that
 * must not be live (parent 0). `tried` holds the copy names already refused, so a taken
 * name moves on to the next counter. Null for a deletion: it is not retried.
 */
function resolveConflict(
  original: CommitRequest,
  attempt: CommitRequest,
  current: VersionEntry | null,
  tried: Set<FilePath>,
  conditions: ConditionalCommits,
): KeptVersion | { retry: CommitRequest } | null {
  if (original.deleted) return null;
  if (attempt.path === original.path && current !== null && sameContent(current, original)) {
    return { sjid: current.sjid, path: original.path, conflicted: false };
  }
  if (attempt.path !== original.path) tried.add(attempt.path);
  const now = conditions.now?.() ?? new Date();
  const copy = conflictedCopyPath(original.path, now, conditions.device, (candidate) => candidate === original.path || tried.has(candidate));
  return { retry: { ...original, path: copy, parent: 0 } };
}

function sameContent(current: VersionEntry, request: CommitRequest): boolean {
  return (
    !current.deleted &&
    current.size === request.size &&
    current.blocks.length === request.blocks.length &&
    current.blocks.every((hash, i) => hash === request.blocks[i])
  );
}
