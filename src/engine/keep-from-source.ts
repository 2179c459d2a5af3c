import type { BlockHash } from '../protocol/index.ts';
import type { LocalBlockStore, Sha256 } from './types.ts';

/** Blocks read and stored at once while keeping an uploaded file. */
const KEEPS_AT_ONCE = 2;

/** One block of an uploaded file: where its bytes were in the source when it was hashed. */
export interface SourceSlice {
  hash: BlockHash;
  offset: number;
  length: number;
}

/** Reads the source's bytes `offset … offset + length` (fewer or more when it changed). */
export type ReadSource = (offset: number, length: number) => Promise<Uint8Array>;

/**
 * Stores an uploaded file's blocks on this device from its source, after the upload: each is
 * read again and hashed again (by the store's `putVerified` where it has one, else here), and
 * stored only when it still has the hash it was uploaded under. A source changed meanwhile
 * leaves that block out: it is fetched later like any missing block; bytes that do not match
 * their hash are never stored. Two blocks at a time (one read while the other is hashed and
 * written), fewer than an upload has in hand, so it stays behind the uploads in importance.
 * Resolves with the blocks stored here (including those already stored).
 */
export async function keepFromSource(
  slices: readonly SourceSlice[],
  read: ReadSource,
  store: LocalBlockStore,
  sha256: Sha256,
): Promise<BlockHash[]> {
  const present = await store.hasBlocks(slices.map((slice) => slice.hash));
  const stored = new Set<BlockHash>(present);
  const keepOne = async ({ hash, offset, length }: SourceSlice) => {
    try {
      const bytes = await read(offset, length);
      if (bytes.length !== length) return;
      if (store.putVerified) {
        if ((await store.putVerified(hash, bytes)) === hash) stored.add(hash);
      } else if ((await sha256(bytes)) === hash) {
        await store.putBlock(hash, bytes);
        stored.add(hash);
      }
    } catch {
      // Unreadable now, or the store refused it: the server has it, so it is fetched later.
    }
  };
  const queue = slices.filter((slice) => !stored.has(slice.hash));
  const next = async () => {
    for (let slice = queue.shift(); slice; slice = queue.shift()) if (!stored.has(slice.hash)) await keepOne(slice);
  };
  await Promise.all(Array.from({ length: Math.min(KEEPS_AT_ONCE, queue.length) }, next));
  return [...stored];
}

/**
 * `store`, except that the blocks of `slices` (which may still grow) are read from the source
 * (and checked against their hash) when the store lacks them: an upload that keeps its local
 * copy only after the commit can still answer the server's 409 need list.
 */
export function withSourceBlocks(
  store: LocalBlockStore,
  slices: readonly SourceSlice[],
  read: ReadSource,
  sha256: Sha256,
): LocalBlockStore {
  // Built when first asked: the upload adds slices as it reads the file.
  const byHash = new Map<BlockHash, SourceSlice>();
  let indexed = 0;
  const sliceOf = (hash: BlockHash) => {
    for (; indexed < slices.length; indexed++) if (!byHash.has(slices[indexed].hash)) byHash.set(slices[indexed].hash, slices[indexed]);
    return byHash.get(hash);
  };
  return {
    hasBlocks: (hashes) => store.hasBlocks(hashes),
    putBlock: (hash, bytes) => store.putBlock(hash, bytes),
    getBlock: async (hash) => {
      const stored = await store.getBlock(hash);
      const slice = sliceOf(hash);
      if (stored || !slice) return stored;
      const bytes = await read(slice.offset, slice.length);
      return (await sha256(bytes)) === hash ? bytes : null;
    },
  };
}
