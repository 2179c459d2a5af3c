import type { BlockSource, WantedBlock } from '../engine/types.ts';
import type { BlockHash } from '../protocol/index.ts';

export interface FreshEntryHoldOptions {
  /** How long a block no LAN peer claims yet waits for one before the server may serve it. */
  holdMs: number;
  /** The highest cursor a LAN peer we fetch from now covers (null: no LAN peer heard, nothing is held); see `nearbyCursor`. */
  nearbyCursor: () => number | null;
  /** A hold ended: the scheduler should look at its sources again. */
  wake: () => void;
  now?: () => number;
}

/** Holds kept at most: past this the oldest are forgotten (and so not held again). */
const MAX_TRACKED = 100_000;

/** One LAN peer as the hold sees it. */
export interface NearbyPeer {
  /** We hear its adverts (and have not banned it), or we have an open link with it. */
  heard: boolean;
  /** The cursor it covers as one of our block sources now (an open link); null when it is none. */
  sourceCursor: number | null;
}

/**
 * What the hold compares a wanted entry with: the highest cursor a LAN peer we can fetch from
 * now covers, 0 when we can fetch from none; null when no LAN peer is heard at all (nothing to
 * wait for). A peer's advert counts only once its link is up: a nearby writer we have no link
 * with yet (a browser behind the bridge, usually) advertises its entry before we have dialled
 * it, and until the dial completes only the server claims the entry's blocks.
 */
export function nearbyCursor(peers: Iterable<NearbyPeer>): number | null {
  let highest: number | null = null;
  for (const peer of peers) {
    if (peer.heard) highest ??= 0;
    if (peer.sourceCursor !== null) highest = Math.max(highest ?? 0, peer.sourceCursor);
  }
  return highest;
}

/**
 * A journal entry newer than what every LAN peer we fetch from covers was most likely written
 * nearby (a browser behind the bridge, another daemon): its writer advertises it within a
 * moment of reading back its own commit, and we dial it if we have no link with it yet. This
 * source claims such blocks with no capacity, so the scheduler keeps them waiting for that
 * advert and link for `holdMs` instead of pulling them from the server at once; after that,
 * or with no LAN peer heard, it claims nothing.
 */
export class FreshEntryHold implements BlockSource {
  readonly id = 'lan:fresh-entry-hold';
  readonly kind = 'peer' as const;
  readonly maxInFlight = 0;
  private readonly since = new Map<BlockHash, number>();
  private readonly now: () => number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = Infinity;

  constructor(private readonly options: FreshEntryHoldOptions) {
    this.now = options.now ?? (() => Date.now());
  }

  canServe(want: WantedBlock): boolean {
    const nearby = this.options.nearbyCursor();
    if (nearby === null || want.sjid <= nearby) return false;
    const now = this.now();
    let since = this.since.get(want.hash);
    if (since === undefined) {
      since = now;
      if (this.since.size >= MAX_TRACKED) this.since.delete(this.since.keys().next().value!);
      this.since.set(want.hash, since);
    }
    if (now - since >= this.options.holdMs) return false;
    // The scheduler asks again only on some event: make sure one comes when this hold ends.
    this.wakeAt(since + this.options.holdMs);
    return true;
  }

  fetchBlock(): Promise<Uint8Array> {
    return Promise.reject(new Error('waiting for a LAN peer to advertise this entry'));
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private wakeAt(at: number): void {
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.options.wake();
    }, Math.max(0, at - this.now()) + 5);
    this.timer.unref?.();
  }
}
