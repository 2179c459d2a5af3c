import type { FilePath, NamespaceId } from '../protocol/index.ts';
import { commitKeepingBoth, type ConditionalCommits, type KeptVersion } from './conflict-copies.ts';
import type { ServerApi } from './server-api.ts';
import type { LocalBlockStore } from './types.ts';

/**
 * Restores version `sjid` of `path` (from its history): an ordinary commit of that version's
 * blocks at the path, naming the live entry this device knows as its parent, so a version
 * another device committed meanwhile is kept too (the restored one then goes to a conflicted
 * copy). The server usually still holds the blocks; any it lacks are sent from this device's
 * store (commitWithBlocks), and a block found in neither fails the restore.
 */
export async function restoreVersion(
  ns: NamespaceId,
  path: FilePath,
  sjid: number,
  api: ServerApi,
  store: LocalBlockStore,
  conditions: ConditionalCommits,
): Promise<KeptVersion> {
  // The one version with this sjid, if it is an entry of this path.
  const { versions } = await api.history(ns, path, { before: sjid + 1, limit: 1 });
  const version = versions[0];
  if (version === undefined || version.sjid !== sjid) throw new Error(`${path} has no version ${sjid}`);
  if (version.deleted) throw new Error(`version ${sjid} of ${path} is a deletion: there is nothing to restore`);
  return commitKeepingBoth(
    ns,
    { path, size: version.size, mtime: version.mtime, blocks: version.blocks, deleted: false },
    api,
    store,
    conditions,
  );
}
