import type { BlockHash, Cursor, NamespaceId } from '../protocol/index.ts';
import { PeerLinkError, type ChunkWatch, type PeerLink } from './peer-link.ts';
import type { PieceTaps } from './piece-taps.ts';
import { PipelineThroughput } from './pipeline-throughput.ts';
import type { BlockSource, WantedBlock } from './types.ts';

export interface PeerBlockSourceOptions {
  /** Requests kept in flight on the link (its pipeline depth). */
  maxInFlight?: number;
  /** Weight of the newest sample in the throughput average (0 … 1). */
  smoothing?: number;
  /** Blocks readers wait for: a single-block fetch feeds its chunks to the block's tap (piece-taps.ts). */
  taps?: PieceTaps | null;
  now?: () => number;
}

/** Blocks per batch to one peer (a link carries 16 requests at once). */
const PEER_BATCH_BLOCKS = 8;

/**
 * A remote peer as a block source for the scheduler. It claims a block when the link is
 * open and either the peer's download advertisement for the namespace covers the entry
 * that needs the block, or the peer announced the block itself (HAVE).
 */
export class PeerBlockSource implements BlockSource {
  readonly kind = 'peer' as const;
  /** Requests kept in flight (a batch counts once). */
  private readonly depth: number;
  /** fetchBlock and fetchBlocks calls under way. */
  private calls = 0;
  private readonly adverts = new Map<NamespaceId, Cursor>();
  private readonly throughput: PipelineThroughput;
  private readonly now: () => number;
  private readonly taps: PieceTaps | null;

  constructor(
    readonly id: string,
    readonly link: PeerLink,
    options: PeerBlockSourceOptions = {},
  ) {
    this.depth = options.maxInFlight ?? 6;
    this.throughput = new PipelineThroughput(options.smoothing);
    this.now = options.now ?? (() => Date.now());
    this.taps = options.taps ?? null;
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

  /**
   * A batch holds one scheduler slot but one link request per block, and a link carries a
   * bounded number (what the peer serves at once): while it has no room, no slot is free.
   */
  get maxInFlight(): number {
    return this.link.requestRoom > 0 ? this.depth : Math.min(this.depth, this.calls);
  }

  /**
   * Blocks one batch may ask for: half the link's requests at most, so that a second batch
   * is on its way while the first one finishes (no idle round trip between batches).
   */
  get maxBatch(): number {
    return Math.min(PEER_BATCH_BLOCKS, this.link.requestRoom);
  }

  /**
   * One block. While a reader has a tap on it, each chunk is fed to the tap as it arrives; a
   * piece that fails its hash aborts the request with PieceMismatchError (the scheduler
   * penalises the peer and asks elsewhere).
   */
  async fetchBlock(want: WantedBlock, signal: AbortSignal): Promise<Uint8Array> {
    const started = this.now();
    this.calls += 1;
    try {
      let bytes: Uint8Array;
      if (this.taps) {
        const taps = this.taps;
        const feeder = {};
        const bad = new AbortController();
        const onBad = (error: Error) => bad.abort(error);
        const watch: ChunkWatch = { onChunk: (offset, chunk) => taps.get(want.hash)?.feed(feeder, offset, chunk, onBad) };
        // A reader that opens the block's tap while this fetch runs gets what arrived so far.
        const unlist = taps.fetching(want.hash, () => ({ feeder, onBad, runs: watch.receivedSoFar?.() ?? [] }));
        try {
          bytes = await this.link.request(want.ns, want.hash, AbortSignal.any([signal, bad.signal]), want.sizeHint, watch, want.from ?? null);
        } finally {
          unlist();
        }
      } else {
        bytes = await this.link.request(want.ns, want.hash, signal, want.sizeHint, null, want.from ?? null);
      }
      this.throughput.record(bytes.length, started, this.now());
      return bytes;
    } finally {
      this.calls -= 1;
    }
  }

  /**
   * Sends every REQUEST frame at once, so many small blocks cost one round trip to the
   * peer. Blocks it refused (NACK) or that stalled are left out of the map; the call
   * rejects only when none arrived and the link failed, or when aborted.
   */
  async fetchBlocks(wants: readonly WantedBlock[], signal: AbortSignal): Promise<Map<BlockHash, Uint8Array>> {
    const started = this.now();
    this.calls += 1;
    try {
      const results = await Promise.allSettled(wants.map((want) => this.link.request(want.ns, want.hash, signal, want.sizeHint)));
      if (signal.aborted) throw signal.reason;
      const blocks = new Map<BlockHash, Uint8Array>();
      let bytes = 0;
      let linkFailure: unknown = null;
      results.forEach((result, i) => {
        if (result.status === 'fulfilled') {
          blocks.set(wants[i].hash, result.value);
          bytes += result.value.length;
        } else if (result.reason instanceof PeerLinkError) {
          linkFailure ??= result.reason;
        }
      });
      if (blocks.size === 0 && linkFailure) throw linkFailure;
      if (blocks.size > 0) this.throughput.record(bytes, started, this.now(), blocks.size);
      return blocks;
    } finally {
      this.calls -= 1;
    }
  }

  release(bytes: Uint8Array): void {
    this.link.release(bytes);
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
