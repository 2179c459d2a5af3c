import type { Cursor, NamespaceId } from '../protocol/index.ts';
import type { PeerLink } from './peer-link.ts';
import { PipelineThroughput } from './pipeline-throughput.ts';
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
  private readonly throughput: PipelineThroughput;
  private readonly now: () => number;

  constructor(
    readonly id: string,
    readonly link: PeerLink,
    options: PeerBlockSourceOptions = {},
  ) {
    this.maxInFlight = options.maxInFlight ?? 6;
    this.throughput = new PipelineThroughput(options.smoothing);
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
    this.throughput.record(bytes.length, started, this.now());
    return bytes;
  }

  /** Block bytes received from this peer (before the scheduler's hash check). */
  get bytesReceived(): number {
    return this.throughput.bytes;
  }

  get blocksReceived(): number {
    return this.throughput.blocks;
  }

  /** Smoothed transfer rate in bytes per second; 0 until a block arrived (BlockSource). */
  bytesPerSecond(): number {
    return this.throughput.bytesPerSecond;
  }
}
