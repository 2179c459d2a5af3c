import type { LiveBlockCheck } from '../../engine/block-server.ts';
import type { LocalBlockStore } from '../../engine/types.ts';
import type { BlockHash, NamespaceId } from '../../protocol/index.ts';
import type { BridgeSocket } from '../relay/bridge-port.ts';
import { BrowserReadError, readBlockFromBrowser, type BrowserReadOptions } from './browser-block-reader.ts';
import type { Slots } from '../slots.ts';

export interface BrowserBlockStoreOptions extends BrowserReadOptions {
  /** The browsers of `ns` on this instance to ask, best first. */
  browsersOf(ns: NamespaceId): BridgeSocket[];
  /** Whether the server's journal of `ns` names the block (asked before any browser is). */
  referencesBlock(ns: NamespaceId, hash: BlockHash): Promise<boolean>;
  /** Blocks assembled in memory at once, across all LAN requests. */
  slots: Slots;
  /** Browsers tried for one block. */
  maxBrowsers: number;
  /** How long a pulled block waits for BlockServer to take it before it is dropped. */
  unclaimedMs?: number;
  /** A block pulled and verified, or given up on after `tried` browsers. */
  onPulled?(bytes: number): void;
  onBrowserFailed?(error: BrowserReadError): void;
}

interface Pulled {
  bytes: Uint8Array;
  release: () => void;
  timer: NodeJS.Timeout;
}

/**
 * What a LAN peer asking the bridge for a block is served from: the browsers of that
 * namespace on this instance. It is shaped for the LAN block service, whose BlockServer asks
 * `isLiveBlock(ns, hash)` and then `getBlock(hash)`: only the first names the namespace, so
 * the pull happens there (highest advert first, at most `maxBrowsers`, each answer verified)
 * and `getBlock` hands over what it pulled. A pulled block holds one of `slots` until taken.
 */
export class BrowserBlockStore implements LocalBlockStore {
  private readonly pulled = new Map<BlockHash, Pulled[]>();

  constructor(private readonly options: BrowserBlockStoreOptions) {}

  readonly isLiveBlock: LiveBlockCheck = async (ns, hash) => {
    // A peer of `ns` may only make the bridge ask its browsers for blocks of `ns`.
    if (!(await this.options.referencesBlock(ns, hash))) return false;
    const browsers = this.options.browsersOf(ns).slice(0, this.options.maxBrowsers);
    if (browsers.length === 0) return false;
    const release = await this.options.slots.acquire();
    for (const browser of browsers) {
      try {
        const bytes = await readBlockFromBrowser(browser, ns, hash, this.options);
        this.keep(hash, bytes, release);
        this.options.onPulled?.(bytes.byteLength);
        return true;
      } catch (error) {
        if (!(error instanceof BrowserReadError)) {
          release();
          throw error;
        }
        this.options.onBrowserFailed?.(error);
      }
    }
    release();
    return false;
  };

  async getBlock(hash: BlockHash): Promise<Uint8Array | null> {
    const waiting = this.pulled.get(hash);
    const taken = waiting?.shift();
    if (!taken) return null;
    if (waiting!.length === 0) this.pulled.delete(hash);
    clearTimeout(taken.timer);
    taken.release();
    return taken.bytes;
  }

  async hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    return new Set(hashes.filter((hash) => this.pulled.has(hash)));
  }

  /** The bridge stores nothing: blocks pass through. */
  async putBlock(): Promise<void> {}

  /** Blocks pulled and not yet taken (each holds a slot). */
  get waiting(): number {
    let count = 0;
    for (const list of this.pulled.values()) count += list.length;
    return count;
  }

  private keep(hash: BlockHash, bytes: Uint8Array, release: () => void): void {
    let list = this.pulled.get(hash);
    if (!list) this.pulled.set(hash, (list = []));
    const entry: Pulled = {
      bytes,
      release,
      // BlockServer takes the block right after isLiveBlock; this only guards the slot.
      timer: setTimeout(() => {
        const at = list.indexOf(entry);
        if (at < 0) return;
        list.splice(at, 1);
        if (list.length === 0 && this.pulled.get(hash) === list) this.pulled.delete(hash);
        release();
      }, this.options.unclaimedMs ?? 30_000),
    };
    entry.timer.unref();
    list.push(entry);
  }
}
