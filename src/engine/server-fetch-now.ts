import { MAX_BLOCK_BATCH, type BlockHash, type NamespaceId } from '../protocol/index.ts';
import type { ServerApi } from './server-api.ts';
import type { LocalBlockStore, Sha256 } from './types.ts';

/**
 * Makes these blocks present from the server alone, for a reader in a tab that does not run
 * the workspace's sync (another tab leads it): each checked against its hash before it is
 * stored. The leader's engine would do better (peers, one queue): NamespaceSync.fetchBlocksNow.
 */
export async function fetchFromServerNow(
  ns: NamespaceId,
  hashes: readonly BlockHash[],
  api: Pick<ServerApi, 'getBlocks'>,
  store: LocalBlockStore,
  sha256: Sha256,
  signal?: AbortSignal,
): Promise<void> {
  const unique = [...new Set(hashes)];
  const present = await store.hasBlocks(unique);
  let missing = unique.filter((hash) => !present.has(hash));
  while (missing.length > 0) {
    const asked = missing.slice(0, MAX_BLOCK_BATCH);
    // The server may send fewer than asked (it cuts an answer at 16 MiB): ask again for the rest.
    const got = await api.getBlocks(ns, asked, signal);
    if (got.size === 0) throw new Error(`the server does not hold block ${asked[0].slice(0, 12)}…`);
    for (const [hash, bytes] of got) {
      if ((await sha256(bytes)) !== hash) throw new Error(`the server sent bytes for block ${hash.slice(0, 12)}… that do not match its hash`);
      await store.putBlock(hash, bytes);
    }
    missing = missing.filter((hash) => !got.has(hash));
  }
}
