import type { BlockHash, Cursor, NamespaceId } from '../protocol/index.ts';
import { PipelineThroughput } from './pipeline-throughput.ts';
import type { BlockSource, WantedBlock } from './types.ts';

/** Fetches one block from the LAN peer through the server's bridge (the relay's `bridge-fetch`). */
export type BridgeFetch = (hash: BlockHash, signal: AbortSignal) => Promise<Uint8Array>;

export interface BridgedBlockSourceOptions {
  /** Requests kept in flight through the bridge for this peer. */
  maxInFlight?: number;
  now?: () => number;
}

/**
 * A LAN peer (a native daemon) that this device reaches through the server's LAN bridge
 * rather than over a data channel. To the scheduler it is one more peer: it claims what its
 * advert covers, and its measured throughput weighs it against the WebRTC peers and the server.
 */
export class BridgedBlockSource implements BlockSource {
  readonly kind = 'peer' as const;
  readonly maxInFlight: number;
  private readonly throughput = new PipelineThroughput();
  private readonly now: () => number;
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
  }

  /** The peer's latest advert for the namespace. */
  setCursor(cursor: Cursor): void {
    this.cursor = cursor;
  }

  canServe(want: WantedBlock): boolean {
    return want.ns === this.ns && this.cursor >= want.sjid;
  }

  async fetchBlock(want: WantedBlock, signal: AbortSignal): Promise<Uint8Array> {
    const started = this.now();
    const bytes = await abortable(this.fetch(want.hash, signal), signal);
    this.throughput.record(bytes.length, started, this.now());
    return bytes;
  }

  bytesPerSecond(): number {
    return this.throughput.bytesPerSecond;
  }

  get bytesReceived(): number {
    return this.throughput.bytes;
  }
}

/** The bridge may not stop a fetch it has begun: the scheduler must not wait for it once aborted. */
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
