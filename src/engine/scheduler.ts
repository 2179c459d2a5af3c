import type { BlockHash } from '../protocol/index.ts';
import { isTransient } from './server-api.ts';
import type { BlockSource, LocalBlockStore, Sha256, WantedBlock } from './types.ts';

export interface SchedulerEvents {
  /** A block was verified and stored; `bytes` is its real length. */
  stored(want: WantedBlock, bytes: number, source: BlockSource): void;
  /** A fetch failed; the block goes back to the queue for another source or a later try. */
  failed(want: WantedBlock, source: BlockSource, error: unknown): void;
  /** A fetch of `want` from `source` began. */
  started(want: WantedBlock, source: BlockSource): void;
  /** A source was caught sending bytes that do not match their hash. */
  penalised(source: BlockSource): void;
}

export interface BlockSchedulerOptions {
  store: LocalBlockStore;
  sha256: Sha256;
  /** The sources usable right now (peers come and go). */
  sources: () => readonly BlockSource[];
  /** Blocks in flight across all sources. */
  maxInFlight: number;
  events: Partial<SchedulerEvents>;
  /** Give up on one request after this long and try elsewhere. */
  requestTimeoutMs?: number;
  now?: () => number;
}

interface PendingBlock {
  want: WantedBlock;
  /** Sources tried since the last round over all of them. */
  tried: Set<string>;
  attempts: number;
  notBefore: number;
}

interface ActiveFetch {
  want: WantedBlock;
  source: BlockSource;
  controller: AbortController;
  /** Set when the block stopped being wanted, so its failure is not retried. */
  unwanted: boolean;
  /** Set when the fetch was given up for someone else's (yieldFetch): back to the queue, no failure. */
  yielded: boolean;
  settled: Promise<void>;
}

class HashMismatchError extends Error {
  constructor(hash: BlockHash, actual: BlockHash) {
    super(`block ${hash.slice(0, 12)}… arrived with hash ${actual.slice(0, 12)}…`);
  }
}

const MAX_BACKOFF_MS = 30_000;
/** Bytes/s assumed for a source not measured yet. */
const NOMINAL_RATE = 10_000_000;

/**
 * Fetches wanted blocks from whichever sources can serve them, with bounded concurrency
 * overall and per source. Every block is hashed before it is stored; a peer whose bytes do
 * not match is penalised for the session and the block is asked of someone else. The
 * server is only a source like the others, preferred last.
 */
export class BlockScheduler {
  private pending = new Map<BlockHash, PendingBlock>();
  private active = new Map<BlockHash, ActiveFetch>();
  private loadBySource = new Map<string, number>();
  private penalisedSources = new Set<string>();
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private idleWaiters: Array<() => void> = [];
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly options: BlockSchedulerOptions) {
    this.now = options.now ?? (() => Date.now());
  }

  /** Replaces the wanted list (order = priority). Fetches of blocks no longer wanted stop. */
  setWanted(wanted: readonly WantedBlock[]): void {
    const next = new Map<BlockHash, PendingBlock>();
    for (const want of wanted) {
      if (this.active.has(want.hash)) continue;
      next.set(want.hash, this.pending.get(want.hash) ?? { want, tried: new Set(), attempts: 0, notBefore: 0 });
    }
    const stillWanted = new Set(wanted.map((want) => want.hash));
    for (const [hash, fetch] of this.active) {
      if (!stillWanted.has(hash)) {
        fetch.unwanted = true;
        fetch.controller.abort();
      }
    }
    this.pending = next;
    this.pump();
  }

  /** Adds blocks to the end of the wanted list (those already wanted keep their place). */
  addWanted(wanted: readonly WantedBlock[]): void {
    for (const want of wanted) {
      if (this.active.has(want.hash) || this.pending.has(want.hash)) continue;
      this.pending.set(want.hash, { want, tried: new Set(), attempts: 0, notBefore: 0 });
    }
    this.pump();
  }

  /** Blocks no longer wanted: dropped from the queue, their fetches stopped. */
  removeWanted(hashes: readonly BlockHash[]): void {
    for (const hash of hashes) {
      this.pending.delete(hash);
      const fetch = this.active.get(hash);
      if (fetch) {
        fetch.unwanted = true;
        fetch.controller.abort();
      }
    }
    this.pump();
  }

  /** Sources changed (a peer arrived or left): try to start more fetches. */
  wake(): void {
    this.pump();
  }

  /** Never ask this source again this session (it broke the protocol, or lied). */
  penalise(sourceId: string): void {
    this.penalisedSources.add(sourceId);
  }

  isPenalised(sourceId: string): boolean {
    return this.penalisedSources.has(sourceId);
  }

  inFlight(): ReadonlySet<BlockHash> {
    return new Set(this.active.keys());
  }

  /**
   * Gives up the fetch of `hash` from a source of `kind` (another device is fetching the
   * same block): it goes back to the queue as if never started. Returns whether it was.
   */
  yieldFetch(hash: BlockHash, kind: BlockSource['kind']): boolean {
    const fetch = this.active.get(hash);
    if (!fetch || fetch.source.kind !== kind || fetch.unwanted) return false;
    fetch.yielded = true;
    fetch.controller.abort(new Error('another device is fetching this block'));
    return true;
  }

  /** Blocks being fetched from sources of one kind right now. */
  inFlightFrom(kind: BlockSource['kind']): BlockHash[] {
    return [...this.active.values()].filter((fetch) => fetch.source.kind === kind).map((fetch) => fetch.want.hash);
  }

  get idle(): boolean {
    return this.pending.size === 0 && this.active.size === 0;
  }

  whenIdle(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Aborts every fetch and resolves once none can still write to the store. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const fetch of this.active.values()) fetch.controller.abort();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    await Promise.all([...this.active.values()].map((fetch) => fetch.settled));
  }

  private pump(): void {
    if (this.stopped) return;
    const now = this.now();
    const sources = this.options.sources().filter((source) => !this.penalisedSources.has(source.id));
    let earliestRetry = Infinity;
    for (const [hash, block] of this.pending) {
      if (this.active.size >= this.options.maxInFlight) break;
      // Nobody can take another request: scanning further would only find more waiting.
      if (!sources.some((source) => this.hasCapacity(source))) break;
      if (block.notBefore > now) {
        earliestRetry = Math.min(earliestRetry, block.notBefore);
        continue;
      }
      const source = this.chooseSource(block, sources);
      if (source === 'wait') continue;
      if (source === 'retry-later') {
        earliestRetry = Math.min(earliestRetry, block.notBefore);
        continue;
      }
      this.pending.delete(hash);
      this.start(block, source);
    }
    this.armRetryTimer(earliestRetry, now);
    this.notifyIfIdle();
  }

  private hasCapacity(source: BlockSource): boolean {
    return (this.loadBySource.get(source.id) ?? 0) < source.maxInFlight;
  }

  /**
   * Picks a source for one block. Peers that claim it come first, even when they are busy:
   * the block then waits for a free slot rather than costing the server (offloading the
   * server is the point). Among peers, the one with the most measured throughput per
   * outstanding request wins. The server serves only what no untried peer claims. When
   * every source has been tried, a new round starts after a backoff.
   */
  private chooseSource(block: PendingBlock, sources: readonly BlockSource[]): BlockSource | 'wait' | 'retry-later' {
    const able = sources.filter((source) => source.canServe(block.want));
    const untried = able.filter((source) => !block.tried.has(source.id));
    if (able.length > 0 && untried.length === 0) {
      block.tried.clear();
      block.notBefore = this.now() + Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(block.attempts, 6));
      return 'retry-later';
    }
    const peers = untried.filter((source) => source.kind === 'peer');
    const candidates = peers.length > 0 ? peers : untried;
    let best: BlockSource | null = null;
    let bestScore = -Infinity;
    for (const source of candidates) {
      if (!this.hasCapacity(source)) continue;
      const load = this.loadBySource.get(source.id) ?? 0;
      // Unmeasured sources get a nominal rate so that new peers are tried.
      const rate = source.bytesPerSecond?.() || NOMINAL_RATE;
      const score = rate / (load + 1);
      if (score > bestScore) {
        best = source;
        bestScore = score;
      }
    }
    return best ?? 'wait';
  }

  private start(block: PendingBlock, source: BlockSource): void {
    const controller = new AbortController();
    const fetch: ActiveFetch = { want: block.want, source, controller, unwanted: false, yielded: false, settled: Promise.resolve() };
    this.active.set(block.want.hash, fetch);
    this.loadBySource.set(source.id, (this.loadBySource.get(source.id) ?? 0) + 1);
    this.options.events.started?.(block.want, source);
    const timeout = setTimeout(() => controller.abort(new Error('request timed out')), this.options.requestTimeoutMs ?? 120_000);
    fetch.settled = this.fetchVerifyStore(block.want, source, controller.signal)
      .then((bytes) => {
        this.options.events.stored?.(block.want, bytes, source);
      })
      .catch((error: unknown) => {
        if (this.stopped) return;
        if (error instanceof HashMismatchError && source.kind === 'peer' && !this.penalisedSources.has(source.id)) {
          this.penalisedSources.add(source.id);
          this.options.events.penalised?.(source);
        }
        if (fetch.unwanted) return;
        if (fetch.yielded) {
          if (!this.pending.has(block.want.hash)) this.pending.set(block.want.hash, block);
          return;
        }
        this.options.events.failed?.(block.want, source, error);
        block.tried.add(source.id);
        block.attempts += 1;
        if (!isTransient(error) && source.kind === 'server') {
          // The server refused outright (403/404): asking again soon will not help.
          block.notBefore = this.now() + MAX_BACKOFF_MS;
        }
        if (!this.pending.has(block.want.hash)) this.pending.set(block.want.hash, block);
      })
      .finally(() => {
        clearTimeout(timeout);
        this.active.delete(block.want.hash);
        this.loadBySource.set(source.id, (this.loadBySource.get(source.id) ?? 1) - 1);
        this.pump();
      });
  }

  private async fetchVerifyStore(want: WantedBlock, source: BlockSource, signal: AbortSignal): Promise<number> {
    const bytes = await source.fetchBlock(want, signal);
    const actual = await this.options.sha256(bytes);
    if (actual !== want.hash) throw new HashMismatchError(want.hash, actual);
    await this.options.store.putBlock(want.hash, bytes);
    return bytes.length;
  }

  private armRetryTimer(at: number, now: number): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (at === Infinity || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.pump();
    }, Math.max(0, at - now));
  }

  private notifyIfIdle(): void {
    if (!this.idle) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
