import type { LocalBlockStore } from '../src/engine/types.ts';
import type { BlockHash, BridgeReadOut, BridgeReadReply, NamespaceId } from '../src/protocol/index.ts';

/** Blocks kept read while the bridge pulls them in pieces (a 4 MiB block is 64 reads of 64 KiB). */
const BLOCKS_KEPT = 4;

/**
 * Answers the server's LAN bridge when a LAN peer wants a block this device holds: in pieces,
 * and only for blocks of live files of this workspace (what a data channel peer could get).
 */
export class BridgeReads {
  /** Recently read blocks, oldest first. */
  private readonly recent = new Map<BlockHash, Promise<Uint8Array | null>>();

  constructor(
    private readonly ns: NamespaceId,
    private readonly blocks: LocalBlockStore,
    private readonly holdsLiveBlock: (hash: BlockHash) => boolean,
  ) {}

  async read(read: BridgeReadOut): Promise<BridgeReadReply> {
    if (read.ns !== this.ns || !this.holdsLiveBlock(read.hash)) {
      return { ok: false, code: 'not_found', message: 'this device does not hold that block' };
    }
    const block = await this.block(read.hash);
    if (!block) return { ok: false, code: 'not_found', message: 'this device does not hold that block' };
    if (read.offset >= block.byteLength) return { ok: false, code: 'invalid', message: `the block has ${block.byteLength} bytes` };
    // A copy: the reply is transferred, and the cached block must stay whole.
    const data = block.slice(read.offset, read.offset + read.length);
    return { ok: true, data, size: block.byteLength };
  }

  private block(hash: BlockHash): Promise<Uint8Array | null> {
    let pending = this.recent.get(hash);
    if (pending) {
      this.recent.delete(hash);
    } else {
      pending = this.blocks.getBlock(hash);
      // A failed read is not kept: the next piece tries again.
      pending.catch(() => this.recent.delete(hash));
    }
    this.recent.set(hash, pending);
    while (this.recent.size > BLOCKS_KEPT) this.recent.delete(this.recent.keys().next().value!);
    return pending;
  }
}
