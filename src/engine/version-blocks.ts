import { MAX_BLOCK_BATCH, type BlockHash, type NamespaceId, type VersionEntry } from '../protocol/index.ts';
import type { ServerApi } from './server-api.ts';
import type { LocalBlockStore, Sha256 } from './types.ts';

/**
 * Makes every block of one version (from a file's history) present in the local store, for
 * opening an old version: the blocks this device holds are used as they are, the rest come
 * from the server, each checked against its hash before it is stored. Peers are not asked:
 * they serve only blocks of live files, and an old version's blocks are usually live nowhere.
 * Stored like any other block (content-addressed), so the page gets a disk-backed Blob rather
 * than the version held in memory.
 */
export async function fetchVersionBlocks(
  ns: NamespaceId,
  version: VersionEntry,
  api: Pick<ServerApi, 'getBlocks'>,
  store: LocalBlockStore,
  sha256: Sha256,
  signal?: AbortSignal,
): Promise<void> {
  if (version.deleted) throw new Error(`version ${version.sjid} of ${version.path} is a deletion: it has no content`);
  const unique = [...new Set(version.blocks)];
  const present = await store.hasBlocks(unique);
  let missing = unique.filter((hash) => !present.has(hash));
  while (missing.length > 0) {
    const asked = missing.slice(0, MAX_BLOCK_BATCH);
    // The server may send fewer than asked (it cuts an answer at 16 MiB): ask again for the rest.
    const got = await api.getBlocks(ns, asked, signal);
    if (got.size === 0) {
      throw new Error(`the server no longer holds block ${asked[0].slice(0, 12)}… of version ${version.sjid} of ${version.path}`);
    }
    for (const [hash, bytes] of got) {
      if ((await sha256(bytes)) !== hash) {
        throw new Error(`the server sent bytes for block ${hash.slice(0, 12)}… of ${version.path} that do not match its hash`);
      }
      await store.putBlock(hash, bytes);
    }
    const fetched = new Set<BlockHash>(got.keys());
    missing = missing.filter((hash) => !fetched.has(hash));
  }
}
