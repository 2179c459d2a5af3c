import { createHash } from 'node:crypto';
import type { FileRecord, LocalBlockStore, NamespaceState, Sha256, SyncStateStore } from '../../src/engine/types.ts';
import type { BlockHash, Cursor, FilePath, NamespaceId } from '../../src/protocol/index.ts';

/** In-memory adapters of the engine's ports, as the LAN daemon's would be on disk. */

export const nodeSha256: Sha256 = async (bytes) => createHash('sha256').update(bytes).digest('hex') as BlockHash;

export function hashOf(bytes: Uint8Array): BlockHash {
  return createHash('sha256').update(bytes).digest('hex') as BlockHash;
}

export class MemoryBlockStore implements LocalBlockStore {
  readonly blocks = new Map<BlockHash, Uint8Array>();
  puts = 0;
  async hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    return new Set(hashes.filter((hash) => this.blocks.has(hash)));
  }
  async putBlock(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    this.puts += 1;
    this.blocks.set(hash, bytes.slice());
  }
  async getBlock(hash: BlockHash): Promise<Uint8Array | null> {
    return this.blocks.get(hash) ?? null;
  }
}

export class MemoryStateStore implements SyncStateStore {
  readonly namespaces = new Map<NamespaceId, NamespaceState>();
  async load(ns: NamespaceId): Promise<NamespaceState> {
    const state = this.namespaces.get(ns) ?? { cursor: 0, syncedCursor: 0, files: [] };
    return { ...state, files: state.files.map((file) => ({ ...file })) };
  }
  async applyPage(ns: NamespaceId, changed: FileRecord[], removed: FilePath[], cursor: Cursor): Promise<void> {
    const state = await this.load(ns);
    const files = new Map(state.files.map((file) => [file.path, file]));
    for (const file of changed) files.set(file.path, { ...file });
    for (const path of removed) files.delete(path);
    this.namespaces.set(ns, { ...state, cursor, files: [...files.values()] });
  }
  async setSyncedCursor(ns: NamespaceId, cursor: Cursor): Promise<void> {
    const state = await this.load(ns);
    this.namespaces.set(ns, { ...state, syncedCursor: cursor });
  }
}
