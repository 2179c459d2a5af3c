import { MAX_BLOCK_SIZE, type BlockHash, type NackReason, type NamespaceId } from '../protocol/index.ts';
import type { LocalBlockStore } from './types.ts';

/** Whether `hash` is a block of a live (not deleted) file of `ns` on this device. */
export type LiveBlockCheck = (ns: NamespaceId, hash: BlockHash) => Promise<boolean>;

export type BlockLookup = { ok: true; bytes: Uint8Array } | { ok: false; reason: NackReason };

/**
 * The serving rule, one per device, shared by every peer link: a peer gets a block only
 * when the relay said this device and that peer share the namespace, the block belongs to
 * a live file of that namespace here, and the bytes are stored.
 */
export class BlockServer {
  constructor(
    private readonly store: LocalBlockStore,
    private readonly isLiveBlock: LiveBlockCheck,
  ) {}

  /** Bytes a lookup returned are no longer used (every byte sent): their buffer may be reused. */
  release(bytes: Uint8Array): void {
    this.store.releaseRead?.(bytes);
  }

  async lookup(ns: NamespaceId, hash: BlockHash, shared: ReadonlySet<NamespaceId>): Promise<BlockLookup> {
    if (!shared.has(ns)) return { ok: false, reason: 'forbidden' };
    try {
      if (!(await this.isLiveBlock(ns, hash))) return { ok: false, reason: 'not_found' };
      // A browser's block file read whole through a sync access handle costs a fraction of a
      // File's bytes, which come through the browser process's blob system.
      const bytes = this.store.readBlock ? await this.store.readBlock(hash) : await this.store.getBlock(hash);
      return bytes && bytes.length > 0 && bytes.length <= MAX_BLOCK_SIZE ? { ok: true, bytes } : { ok: false, reason: 'not_found' };
    } catch {
      // A store failure is ours, not the peer's: it may ask elsewhere.
      return { ok: false, reason: 'busy' };
    }
  }
}
