import { MAX_BLOCK_SIZE, type BlockHash, type Cursor, type NamespaceId } from '../protocol/index.ts';
import type { PieceTaps } from './piece-taps.ts';
import { PipelineThroughput } from './pipeline-throughput.ts';
import type { BlockSource, WantedBlock } from './types.ts';

/**
 * Takes the next bytes of a streamed bridge fetch: one piece or several whole pieces back to
 * back, as one bridge event brought them (`offset` in the block, in order, unverified);
 * returns false to stop the stream (the fetch was given up).
 */
export type BridgePieceSink = (offset: number, bytes: Uint8Array) => boolean;

/**
 * Streams one block from the LAN peer through the server's bridge (the relay's `bridge-fetch`
 * with a stream id): pieces go to `sink` as they arrive; resolves with the block's size once
 * the bridge vouched for the whole block, rejects otherwise (then the pieces are worthless).
 */
export type BridgeFetch = (hash: BlockHash, sink: BridgePieceSink) => Promise<number>;

export interface BridgedBlockSourceOptions {
  /** Requests kept in flight through the bridge for this peer. */
  maxInFlight?: number;
  /** Blocks readers wait for: each piece is fed to the block's tap, which lets only pieces matching the server's piece hashes be read. */
  taps?: PieceTaps | null;
  now?: () => number;
}

/** The pieces of one streamed block, put together in order (grown as they come). */
class PieceAssembly {
  private buffer: Uint8Array;
  length = 0;

  constructor(sizeHint: number) {
    this.buffer = new Uint8Array(sizeHint > 0 ? Math.min(sizeHint, MAX_BLOCK_SIZE) : 256 * 1024);
  }

  put(offset: number, bytes: Uint8Array): void {
    if (offset !== this.length || offset + bytes.length > MAX_BLOCK_SIZE) throw new Error(`a bridged piece at ${offset} where ${this.length} was next`);
    if (offset + bytes.length > this.buffer.length) {
      const grown = new Uint8Array(Math.min(MAX_BLOCK_SIZE, Math.max(offset + bytes.length, this.buffer.length * 2)));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(bytes, offset);
    this.length += bytes.length;
  }

  soFar(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }

  /** The block, once the bridge vouched for `size` bytes. */
  block(size: number): Uint8Array {
    if (size !== this.length) throw new Error(`the bridge vouched for ${size} bytes, ${this.length} arrived`);
    return this.length === this.buffer.length ? this.buffer : this.buffer.slice(0, this.length);
  }
}

export class BridgedBlockSource implements BlockSource {
  readonly kind = 'peer' as const;
  readonly maxInFlight: number;
  private readonly throughput = new PipelineThroughput();
  private readonly now: () => number;
  private readonly taps: PieceTaps | null;
  private cursor: Cursor;

  constructor(
    readonly id: string,
    private readonly ns: NamespaceId,
    cursor: Cursor,
    private readonly fetch: BridgeFetch,
    options: BridgedBlockSourceOptions = {},
  ) {
    this.cursor = cursor;
    this.maxInFlight = options.maxInFlight ?? 4;
    this.now = options.now ?? (() => Date.now());
    this.taps = options.taps ?? null;
  }

  /** The peer's latest advert for the namespace. */
  setCursor(cursor: Cursor): void {
    this.cursor = cursor;
  }

  canServe(want: WantedBlock): boolean {
    return want.ns === this.ns && this.cursor >= want.sjid;
  }

  /**
   * One block, piece by piece as the bridge forwards it. A reader's tap on the block gets each
   * piece at once (and uses it only once it matched the server's piece hash; a piece that does
   * not aborts the fetch with PieceMismatchError). The block itself is returned only after the
   * bridge's verdict, and the scheduler checks its hash again before storing it.
   */
  async fetchBlock(want: WantedBlock, signal: AbortSignal): Promise<Uint8Array> {
    const started = this.now();
    const assembly = new PieceAssembly(want.sizeHint);
    const bad = new AbortController();
    const stop = AbortSignal.any([signal, bad.signal]);
    const feeder = {};
    const onBad = (error: Error) => bad.abort(error);
    const taps = this.taps;
    const sink: BridgePieceSink = (offset, bytes) => {
      if (stop.aborted) return false;
      assembly.put(offset, bytes);
      taps?.get(want.hash)?.feed(feeder, offset, bytes, onBad);
      return true;
    };
    // A reader that opens the block's tap while this fetch runs gets what arrived so far.
    const unlist = taps?.fetching(want.hash, () => ({ feeder, onBad, runs: [{ offset: 0, bytes: assembly.soFar() }] }));
    try {
      const size = await abortable(this.fetch(want.hash, sink), stop);
      const bytes = assembly.block(size);
      this.throughput.record(bytes.length, started, this.now());
      return bytes;
    } finally {
      unlist?.();
    }
  }

  bytesPerSecond(): number {
    return this.throughput.bytesPerSecond;
  }

  get bytesReceived(): number {
    return this.throughput.bytes;
  }
}

/** The scheduler must not wait for the bridge once aborted (the next piece's ack tells the bridge to stop). */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
