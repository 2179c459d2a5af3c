import type { Cursor, NamespaceId } from '../protocol/index.ts';
import type { PeerLink } from './peer-link.ts';
import type { BlockSource, WantedBlock } from './types.ts';

export interface PeerBlockSourceOptions {
  /** Requests kept in flight on the link (its pipeline depth). */
  maxInFlight?: number;
  /** Weight of the newest sample in the throughput average (0 … 1). */
  smoothing?: number;
  now?: () => number;
}

/**
 * A remote peer as a block source for the scheduler. It claims a block when the link is
 * open and either the peer's download advertisement for the namespace covers the entry
 * that needs the block, or the peer announced the block itself (HAVE).
 */
export class PeerBlockSource implements BlockSource {
  readonly kind = 'peer' as const;
  readonly maxInFlight: number;
  private readonly adverts = new Map<NamespaceId, Cursor>();
  private readonly smoothing: number;
  private readonly now: () => number;
  private rate = 0;
  private lastDoneAt = 0;
  private blocks = 0;
  private bytes = 0;

  constructor(
    readonly id: string,
    readonly link: PeerLink,
    options: PeerBlockSourceOptions = {},
  ) {
    this.maxInFlight = options.maxInFlight ?? 6;
    this.smoothing = options.smoothing ?? 0.3;
    this.now = options.now ?? (() => Date.now());
  }

  /** The peer's latest download advertisement for `ns` (from the relay). */
  setAdvert(ns: NamespaceId, cursor: Cursor): void {
    this.adverts.set(ns, cursor);
  }

  /** The peer left the namespace (or its advert expired). */
  clearAdvert(ns: NamespaceId): void {
    this.adverts.delete(ns);
  }

  advert(ns: NamespaceId): Cursor | undefined {
    return this.adverts.get(ns);
  }

  canServe(want: WantedBlock): boolean {
    if (!this.link.isOpen || !this.link.sharedNamespaces().has(want.ns)) return false;
    const cursor = this.adverts.get(want.ns);
    return (cursor !== undefined && cursor >= want.sjid) || this.link.peerHas(want.ns, want.hash);
  }

  async fetchBlock(want: WantedBlock, signal: AbortSignal): Promise<Uint8Array> {
    const started = this.now();
    const bytes = await this.link.request(want.ns, want.hash, signal, want.sizeHint);
    this.record(bytes.length, started);
    return bytes;
  }

  /** Block bytes received from this peer (before the scheduler's hash check). */
  get bytesReceived(): number {
    return this.bytes;
  }

  get blocksReceived(): number {
    return this.blocks;
  }

  /** Smoothed transfer rate in bytes per second; 0 until a block arrived (BlockSource). */
  bytesPerSecond(): number {
    return this.rate;
  }

  /**
   * Requests overlap, so a block's own duration includes its wait in the peer's queue.
   * Measure instead from the later of its start and the previous block's end: on a busy
   * pipeline that is the time the link spent on this block.
   */
  private record(length: number, started: number): void {
    const done = this.now();
    const elapsedMs = Math.max(1, done - Math.max(started, this.lastDoneAt));
    const sample = (length * 1000) / elapsedMs;
    this.rate = this.blocks === 0 ? sample : this.rate + this.smoothing * (sample - this.rate);
    this.lastDoneAt = done;
    this.blocks += 1;
    this.bytes += length;
  }
}
