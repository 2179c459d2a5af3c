import type { BlockHash } from '../protocol/index.ts';
import { PieceMismatchError } from './piece-taps.ts';
import { MinHeap } from './min-heap.ts';
import { isTransient } from './server-api.ts';
import type { BlockSource, LocalBlockStore, Sha256, WantedBlock } from './types.ts';

export interface SchedulerEvents {
  /** A block was verified and stored; `bytes` is its real length. */
  stored(want: WantedBlock, bytes: number, source: BlockSource): void;
  /** A fetch failed; the block goes back to the queue for another source or a later try. */
  failed(want: WantedBlock, source: BlockSource, error: unknown): void;
  /** A fetch of `want` from `source` began (once per block, batched or not). */
  started(want: WantedBlock, source: BlockSource): void;
  /** A source was caught sending bytes that do not match their hash. */
  penalised(source: BlockSource): void;
}

export interface BlockSchedulerOptions {
  store: LocalBlockStore;
  sha256: Sha256;
  /** The sources usable right now (peers come and go). */
  sources: () => readonly BlockSource[];
  /** Requests in flight across all sources (a batch is one). */
  maxInFlight: number;
  events: Partial<SchedulerEvents>;
  /** Give up on one request after this long and try elsewhere. */
  requestTimeoutMs?: number;
  /** Blocks expected to be at most this large (sizeHint) are batched for sources that can. Default 256 KiB. */
  batchBlockMaxBytes?: number;
  /** Blocks per batch request. Default 256 (a source's own maxBatch may lower it). */
  maxBatchBlocks?: number;
  /** Expected bytes per batch request. Default 8 MiB. */
  maxBatchBytes?: number;
  now?: () => number;
}

interface PendingBlock {
  want: WantedBlock;
  /** Priority: lower goes first (the wanted list's order). */
  rank: number;
  /** Sources tried since the last round over all of them. */
  tried: Set<string>;
  attempts: number;
  notBefore: number;
  /** Bumped whenever the block is queued anywhere: older queue entries for it are stale. */
  token: number;
}

/** A block in a queue, valid while its token is current. */
interface QueueEntry {
  block: PendingBlock;
  token: number;
}

/** One block of a request in flight. */
interface Member {
  block: PendingBlock;
  /** Set when the block stopped being wanted: its result is dropped. */
  unwanted: boolean;
  /** Set when the fetch was given up for someone else's (yieldFetch): back to the queue, no failure. */
  yielded: boolean;
}

/** One request in flight: a single block, or a batch of small ones (one slot either way). */
interface ActiveRequest {
  source: BlockSource;
  controller: AbortController;
  members: Map<BlockHash, Member>;
  settled: Promise<void>;
  /** Its slot is free again (the answer arrived; hashing and storing go on without it). */
  released: boolean;
  /** A block a reader waits for (prioritise): its source takes no background request meanwhile. */
  urgent: boolean;
  /** A block a reader will want soon (prioritise with `ahead`): yields to a reader's block that starts fresh. */
  ahead: boolean;
  /** A reader's block started on its own (not an ahead fetch promoted): a seek; ahead fetches wait for it. */
  seek: boolean;
}

/** A batch being filled during one pump, its slot already reserved. */
interface OpenBatch {
  source: BlockSource;
  blocks: PendingBlock[];
  bytes: number;
  limit: number;
}

type Choice = { source: BlockSource } | { waitFor: string[] } | 'retry-later';

class HashMismatchError extends Error {
  constructor(hash: BlockHash, actual: BlockHash) {
    super(`block ${hash.slice(0, 12)}… arrived with hash ${actual.slice(0, 12)}…`);
  }
}

/** A batch answer left the block out (refused by the source, or cut to keep the answer small). */
export class BlockAbsentError extends Error {
  override readonly name = 'BlockAbsentError';
  constructor(hash: BlockHash) {
    super(`block ${hash.slice(0, 12)}… was not in the batch answer`);
  }
}

const MAX_BACKOFF_MS = 30_000;
/** Bytes/s assumed for a source not measured yet. */
const NOMINAL_RATE = 10_000_000;
/**
 * Bytes received and still being hashed and stored. A server request's slot frees as soon as
 * its answer is in, so the next fetch overlaps this work (holding the slot through it left the
 * link idle for a hash and a write per block); this bounds what may pile up meanwhile.
 */
const MAX_PROCESSING_BYTES = 32 * 1024 * 1024;
/** Blocks one pump may look at without starting them before it yields the event loop. */
const EXAMINE_BUDGET = 256;
/** Heaps of woken blocks kept apart before they are merged into one. */
const MAX_RECHECK_HEAPS = 8;
const DEFAULT_BATCH_BLOCK_MAX_BYTES = 256 * 1024;
const DEFAULT_MAX_BATCH_BLOCKS = 256;
const DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * Urgent requests in flight at once, over all sources: a reader of a stream wants a block or
 * two, but a caller may ask for many (a zip of files not synced); past this they wait their
 * turn, first asked first served, still ahead of every background block.
 */
const MAX_URGENT_IN_FLIGHT = 4;
/**
 * Read-ahead requests in flight at once (prioritise with `ahead`), beside the urgent ones: a
 * stream of an online-only file keeps this many blocks coming while it reads the current one.
 */
const MAX_AHEAD_IN_FLIGHT = 4;
/** Ranks of urgent blocks: below every background rank, first asked first served. */
const URGENT_RANK_BASE = -Number.MAX_SAFE_INTEGER;

const byRank = (a: QueueEntry, b: QueueEntry) => a.block.rank < b.block.rank;
const byTime = (a: QueueEntry, b: QueueEntry) => a.block.notBefore < b.block.notBefore;

/**
 * Fetches wanted blocks from whichever sources can serve them, with bounded concurrency
 * overall and per source. Every block is hashed before it is stored; a peer whose bytes do
 * not match is penalised for the session and the block is asked of someone else. The
 * server is only a source like the others, preferred last. Small blocks bound for the same
 * source travel in one batch request.
 *
 * Cost: a block that cannot start now is parked where the event that could start it will
 * find it: on each source whose free slot it waits for, in a backoff queue, or (claimed by
 * no source) until `wake()`. So one pump costs about the fetches it starts plus a bounded
 * number of looks (EXAMINE_BUDGET; it continues on a later turn), never a scan of every
 * pending block, and a workspace of 100,000 blocks does not cost O(N²) to fetch.
 */
export class BlockScheduler {
  private pending = new Map<BlockHash, PendingBlock>();
  /** Blocks to look at, best rank first. */
  private ready = new MinHeap<QueueEntry>(byRank);
  /** Heaps of parked blocks to look at again (after wake or penalise); merged by rank with `ready`. */
  private recheck: MinHeap<QueueEntry>[] = [];
  /** Blocks waiting for a slot at a source, by source id. */
  private parked = new Map<string, MinHeap<QueueEntry>>();
  /** Blocks no usable source claims: they wait for `wake()`. */
  private unclaimed = new MinHeap<QueueEntry>(byRank);
  private backoff = new MinHeap<QueueEntry>(byTime);
  private nextRank = 0;

  private active = new Map<BlockHash, ActiveRequest>();
  private requestsInFlight = 0;
  private processingBytes = 0;
  private loadBySource = new Map<string, number>();
  private penalisedSources = new Set<string>();
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private retryAt = Infinity;
  private continueTimer: ReturnType<typeof setTimeout> | null = null;
  private idleWaiters: Array<() => void> = [];
  private stopped = false;
  /** Blocks a reader waits for (prioritise), until stored or given up. */
  private urgent = new Set<BlockHash>();
  private urgentSeq = 0;
  /** Urgent requests in flight per source: while any, the source starts no background request. */
  private urgentBySource = new Map<string, number>();
  private urgentInFlight = 0;
  /** Urgent blocks a reader only reads ahead (a subset of `urgent`): they start after the others, and never during a seek. */
  private ahead = new Set<BlockHash>();
  private aheadInFlight = 0;
  private seeksInFlight = 0;
  private readonly now: () => number;
  private readonly batchBlockMaxBytes: number;
  private readonly maxBatchBlocks: number;
  private readonly maxBatchBytes: number;

  constructor(private readonly options: BlockSchedulerOptions) {
    this.now = options.now ?? (() => Date.now());
    this.batchBlockMaxBytes = options.batchBlockMaxBytes ?? DEFAULT_BATCH_BLOCK_MAX_BYTES;
    this.maxBatchBlocks = options.maxBatchBlocks ?? DEFAULT_MAX_BATCH_BLOCKS;
    this.maxBatchBytes = options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
  }

  /** Replaces the wanted list (order = priority). Fetches of blocks no longer wanted stop. */
  setWanted(wanted: readonly WantedBlock[]): void {
    const next = new Map<BlockHash, PendingBlock>();
    for (const want of wanted) {
      if (this.rewant(want.hash) || next.has(want.hash)) continue;
      const block = this.pending.get(want.hash) ?? newBlock(want);
      if (!this.urgent.has(want.hash)) block.rank = next.size;
      next.set(want.hash, block);
    }
    // A block a reader waits for stays wanted until it is stored or the reader gives up.
    for (const hash of this.urgent) {
      const block = this.pending.get(hash);
      if (block && !next.has(hash)) next.set(hash, block);
    }
    const stillWanted = new Set([...wanted.map((want) => want.hash), ...this.urgent]);
    this.dropActive([...this.active.keys()].filter((hash) => !stillWanted.has(hash)));
    this.pending = next;
    this.nextRank = next.size;
    // Everything is looked at afresh; ranks are in order, so the sorted list is a heap already.
    const now = this.now();
    const ready: QueueEntry[] = [];
    this.backoff = new MinHeap<QueueEntry>(byTime);
    for (const block of next.values()) {
      const entry = { block, token: ++block.token };
      if (block.notBefore > now) this.backoff.push(entry);
      else ready.push(entry);
    }
    if (this.urgent.size === 0) {
      this.ready = new MinHeap<QueueEntry>(byRank, ready);
    } else {
      // Urgent ranks sit below the list's own order: heapify one by one.
      this.ready = new MinHeap<QueueEntry>(byRank);
      for (const entry of ready) this.ready.push(entry);
    }
    this.recheck = [];
    this.parked.clear();
    this.unclaimed = new MinHeap<QueueEntry>(byRank);
    this.pump();
  }

  /** Adds blocks to the end of the wanted list (those wanted already keep their place). */
  addWanted(wants: readonly WantedBlock[]): void {
    for (const want of wants) {
      if (this.rewant(want.hash) || this.pending.has(want.hash)) continue;
      const block = newBlock(want);
      block.rank = this.nextRank++;
      this.pending.set(want.hash, block);
      this.enqueue(block);
    }
    this.pump();
  }

  /**
   * A reader waits for these blocks (a Range read of a file not synced yet): they go before
   * every other block, each starts at once even past the request caps (up to four urgent
   * requests at a time, then first asked first served), on a peer that claims
   * it if any (else the server), and while one is in flight its source's background requests
   * step aside (back to the queue, as yieldFetch) and it takes no new ones, so the reader gets
   * the link to itself. Blocks not wanted yet are added. They stay urgent until stored
   * (`stored` fires as for any block) or `unprioritise`.
   */
  private backgroundHeld = false;

  prioritise(wants: readonly WantedBlock[], options: { ahead?: boolean } = {}): void {
    for (const want of wants) {
      const ahead = options.ahead === true;
      // A block read now that was read ahead becomes a reader's block; one read now stays so.
      if (ahead && this.urgent.has(want.hash) && !this.ahead.has(want.hash)) continue;
      if (ahead) this.ahead.add(want.hash);
      else this.ahead.delete(want.hash);
      this.urgent.add(want.hash);
      if (this.rewant(want.hash)) {
        this.promote(this.active.get(want.hash)!, ahead);
        continue;
      }
      let block = this.pending.get(want.hash);
      if (!block) {
        block = newBlock(want);
        this.pending.set(want.hash, block);
      }
      // Where the reader's bytes start: a peer that can serves them first (WantedBlock.from).
      if (want.from !== undefined) block.want = { ...block.want, from: want.from };
      block.rank = URGENT_RANK_BASE + this.urgentSeq++;
      // A reader is waiting: no backoff left over from background failures.
      block.notBefore = 0;
      this.enqueue(block);
    }
    this.pump();
  }

  /** Holds the background fetches (urgent ones still start), or lets them go again. */
  holdBackground(held: boolean): void {
    this.backgroundHeld = held;
    if (!held) this.wake();
  }

  /** The reader gave up on these blocks: they go back to the background order (if still wanted at all). */
  unprioritise(hashes: readonly BlockHash[]): void {
    for (const hash of hashes) {
      this.ahead.delete(hash);
      if (!this.urgent.delete(hash)) continue;
      const active = this.active.get(hash);
      if (active) this.demote(active);
      const block = this.pending.get(hash);
      if (!block) continue;
      const { from: _readerOffset, ...background } = block.want;
      block.want = background;
      block.rank = this.nextRank++;
      this.enqueue(block);
    }
    this.pump();
  }

  /** A background request already carrying an urgent block: its source now serves it alone. A read-ahead one becomes a reader's. */
  private promote(request: ActiveRequest, ahead: boolean): void {
    if (request.released) return;
    if (request.urgent) {
      if (request.ahead && !ahead) {
        request.ahead = false;
        this.aheadInFlight -= 1;
      }
      return;
    }
    request.urgent = true;
    request.ahead = ahead;
    if (ahead) this.aheadInFlight += 1;
    this.urgentBySource.set(request.source.id, (this.urgentBySource.get(request.source.id) ?? 0) + 1);
    this.urgentInFlight += 1;
    this.yieldBackground(request.source);
  }

  /**
   * An urgent request none of whose blocks a reader waits for any more goes on as a background
   * one: it no longer holds its source for itself nor counts against the urgent caps, so the
   * next reader's block (a seek) starts at once, and it steps aside for it like any background
   * request.
   */
  private demote(request: ActiveRequest): void {
    if (request.released || !request.urgent) return;
    for (const hash of request.members.keys()) if (this.urgent.has(hash)) return;
    if (request.ahead) this.aheadInFlight -= 1;
    if (request.seek) this.seeksInFlight -= 1;
    request.ahead = request.seek = false;
    // Asked again after stepping aside, it is a plain request: nobody reads from an offset.
    for (const member of request.members.values()) {
      const { from: _readerOffset, ...background } = member.block.want;
      member.block.want = background;
    }
    this.endUrgent(request);
  }

  /** Stops wanting these blocks: queued ones are forgotten, fetches of them stop. */
  removeWanted(hashes: readonly BlockHash[]): void {
    // Queue entries of a forgotten block are recognised as stale when they come up.
    for (const hash of hashes) {
      // A block a reader waits for is fetched all the same (a file removed mid-read).
      if (this.urgent.has(hash)) continue;
      this.pending.delete(hash);
    }
    this.dropActive(hashes);
    this.pump();
  }

  /** Sources changed (a peer arrived or left, claims changed): look at parked blocks again. */
  wake(): void {
    for (const heap of this.parked.values()) if (heap.size > 0) this.recheck.push(heap);
    this.parked.clear();
    if (this.unclaimed.size > 0) this.recheck.push(this.unclaimed);
    this.unclaimed = new MinHeap<QueueEntry>(byRank);
    this.boundRecheck();
    this.pump();
  }

  /**
   * What sources say about these blocks changed (a peer now holds them, or stopped or began
   * fetching them): look at just them again. A peer's HAVE names the blocks it changes, and
   * waking every parked block for each one cost O(parked) per announcement.
   */
  recheckBlocks(hashes: Iterable<BlockHash>): void {
    let queued = false;
    for (const hash of hashes) {
      // Blocks being fetched are not pending; their request decides what happens next.
      const block = this.pending.get(hash);
      if (!block) continue;
      this.enqueue(block);
      queued = true;
    }
    if (queued) this.pump();
  }

  /** Never ask this source again this session (it broke the protocol, or lied). */
  penalise(sourceId: string): void {
    this.penalisedSources.add(sourceId);
    const waiting = this.parked.get(sourceId);
    if (waiting) {
      this.parked.delete(sourceId);
      this.recheck.push(waiting);
      this.boundRecheck();
    }
  }

  /** A peer sent bytes that do not match (a block or a piece): never asked again; the server is never penalised. */
  private penaliseLiar(source: BlockSource): void {
    if (source.kind !== 'peer' || this.penalisedSources.has(source.id)) return;
    this.penalise(source.id);
    this.options.events.penalised?.(source);
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
   * Inside a batch the request goes on for the others (a batch of small blocks is one
   * request); if the block arrives all the same it is stored, else it is queued again.
   */
  yieldFetch(hash: BlockHash, kind: BlockSource['kind']): boolean {
    const request = this.active.get(hash);
    const member = request?.members.get(hash);
    if (!request || !member || request.source.kind !== kind || member.unwanted || member.yielded) return false;
    member.yielded = true;
    this.abortIfAbandoned(request, new Error('another device is fetching this block'));
    return true;
  }

  /** Blocks being fetched from sources of one kind right now. */
  inFlightFrom(kind: BlockSource['kind']): BlockHash[] {
    const hashes: BlockHash[] = [];
    for (const [hash, request] of this.active) if (request.source.kind === kind && !request.members.get(hash)!.unwanted) hashes.push(hash);
    return hashes;
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
    const requests = new Set(this.active.values());
    for (const request of requests) request.controller.abort();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.continueTimer) clearTimeout(this.continueTimer);
    this.retryTimer = this.continueTimer = null;
    await Promise.all([...requests].map((request) => request.settled));
  }

  // ------------------------------------------------------------ choosing

  private pump(): void {
    if (this.stopped) return;
    const now = this.now();
    this.releaseDue(now);
    const sources = this.options.sources().filter((source) => !this.penalisedSources.has(source.id));
    const batches = new Map<string, OpenBatch>();
    if (this.urgent.size > 0) this.startUrgent(sources, now);
    let looked = 0;
    // Held: only urgent blocks (readers) start; the background waits for holdBackground(false).
    for (; !this.backgroundHeld; ) {
      const atCap = this.requestsInFlight >= this.options.maxInFlight || this.processingBytes >= MAX_PROCESSING_BYTES;
      if (atCap && batches.size === 0) break;
      // Nobody can take another request: looking further would only find more waiting.
      if (!sources.some((source) => this.hasCapacity(source) || batches.has(source.id))) break;
      if (looked >= EXAMINE_BUDGET) {
        this.continueLater();
        break;
      }
      const block = this.takeNext();
      if (!block) break;
      if (this.urgent.has(block.want.hash)) {
        // Urgent blocks are started by startUrgent on every pump, not from the queues.
        looked += 1;
        continue;
      }
      const choice = this.chooseSource(block, sources, batches, atCap);
      if (choice === 'retry-later') {
        looked += 1;
        this.enqueue(block);
        continue;
      }
      if ('waitFor' in choice) {
        looked += 1;
        if (atCap && choice.waitFor.length > 0) {
          // Waiting for the global cap, not for a source: back to the front of the queue.
          this.ready.push({ block, token: ++block.token });
          break;
        }
        this.park(block, choice.waitFor);
        continue;
      }
      this.assign(block, choice.source, sources, batches);
    }
    for (const batch of [...batches.values()]) this.sendBatch(batch, sources, batches);
    this.armRetryTimer(now);
    this.notifyIfIdle();
  }

  /**
   * Picks a source for one block. Peers that claim it come first, even when they are busy:
   * the block then waits for a free slot rather than costing the server (offloading the
   * server is the point). Among peers, the one with the most measured throughput per
   * outstanding request wins. The server serves only what no untried peer claims. When
   * every source has been tried, a new round starts after a backoff.
   */
  private chooseSource(block: PendingBlock, sources: readonly BlockSource[], batches: Map<string, OpenBatch>, atCap: boolean): Choice {
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
      const batch = batches.get(source.id);
      const joins = batch !== undefined && this.fits(batch, block);
      if (!joins && (atCap || !this.hasCapacity(source))) continue;
      const load = this.loadBySource.get(source.id) ?? 0;
      // Unmeasured sources get a nominal rate so that new peers are tried.
      const rate = source.bytesPerSecond?.() || NOMINAL_RATE;
      const score = rate / (load + (joins ? 0 : 1));
      if (score > bestScore) {
        best = source;
        bestScore = score;
      }
    }
    return best ? { source: best } : { waitFor: candidates.map((source) => source.id) };
  }

  /** Starts the block on `source`, in the source's batch when both allow it. */
  private assign(block: PendingBlock, source: BlockSource, sources: readonly BlockSource[], batches: Map<string, OpenBatch>): void {
    const open = batches.get(source.id);
    if (open && this.fits(open, block)) {
      this.addToBatch(open, block);
      // Sent once full, so that the source's next batch sees its room as it is (a peer link's requests).
      if (open.blocks.length >= open.limit) this.sendBatch(open, sources, batches);
      return;
    }
    if (open) this.sendBatch(open, sources, batches);
    this.reserveSlot(source);
    const limit = this.batchLimit(source, block);
    if (limit < 2) {
      this.startRequest(source, [block]);
      return;
    }
    const batch: OpenBatch = { source, blocks: [], bytes: 0, limit };
    this.addToBatch(batch, block);
    batches.set(source.id, batch);
  }

  private sendBatch(batch: OpenBatch, sources: readonly BlockSource[], batches: Map<string, OpenBatch>): void {
    this.topUp(batch, sources, batches);
    batches.delete(batch.source.id);
    this.startRequest(batch.source, batch.blocks);
  }

  /** How many blocks a batch starting with `block` may hold on `source` (below 2: no batch). */
  private batchLimit(source: BlockSource, block: PendingBlock): number {
    if (!source.fetchBlocks || !this.isSmall(block)) return 1;
    return Math.min(this.maxBatchBlocks, source.maxBatch ?? this.maxBatchBlocks);
  }

  private fits(batch: OpenBatch, block: PendingBlock): boolean {
    return batch.blocks.length < batch.limit && this.isSmall(block) && batch.bytes + block.want.sizeHint <= this.maxBatchBytes;
  }

  private isSmall(block: PendingBlock): boolean {
    return block.want.sizeHint > 0 && block.want.sizeHint <= this.batchBlockMaxBytes;
  }

  private addToBatch(batch: OpenBatch, block: PendingBlock): void {
    batch.blocks.push(block);
    batch.bytes += block.want.sizeHint;
  }

  private hasCapacity(source: BlockSource): boolean {
    // A source serving a reader's urgent block takes no background request until it is done.
    if ((this.urgentBySource.get(source.id) ?? 0) > 0) return false;
    return (this.loadBySource.get(source.id) ?? 0) < source.maxInFlight;
  }

  /**
   * Starts every urgent block that can start now, each alone (no batch), past the caps: a
   * peer that claims it and has not failed it, else the server. The few blocks a reader
   * asks for at once bound what this adds to the load.
   */
  private startUrgent(sources: readonly BlockSource[], now: number): void {
    // Readers' blocks first (first asked first served), then the blocks read ahead.
    for (const hash of this.urgent) {
      if (this.urgentInFlight - this.aheadInFlight >= MAX_URGENT_IN_FLIGHT) break;
      if (!this.ahead.has(hash)) this.startUrgentBlock(hash, sources, now, false);
    }
    if (this.ahead.size === 0) return;
    for (const hash of this.ahead) {
      // Read-ahead waits while a seek's block is fetched, and is bounded in flight and in memory.
      if (this.seeksInFlight > 0 || this.aheadInFlight >= MAX_AHEAD_IN_FLIGHT || this.processingBytes >= MAX_PROCESSING_BYTES) return;
      this.startUrgentBlock(hash, sources, now, true);
    }
  }

  private startUrgentBlock(hash: BlockHash, sources: readonly BlockSource[], now: number, ahead: boolean): void {
    const block = this.pending.get(hash);
    if (!block || block.notBefore > now) return;
    const able = sources.filter((source) => source.canServe(block.want));
    let untried = able.filter((source) => !block.tried.has(source.id));
    if (able.length === 0) return;
    if (untried.length === 0) {
      // Every source failed it once: a new round after a short backoff (a reader is waiting).
      block.tried.clear();
      block.notBefore = now + Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(block.attempts, 6));
      this.enqueue(block);
      return;
    }
    const peers = untried.filter((source) => source.kind === 'peer');
    untried = peers.length > 0 ? peers : untried;
    let best = untried[0];
    for (const source of untried) if ((source.bytesPerSecond?.() ?? 0) > (best.bytesPerSecond?.() ?? 0)) best = source;
    this.yieldBackground(best);
    // A reader's block that starts on its own is a seek: the link is its, reads ahead step aside.
    if (!ahead) this.yieldReadAhead(best);
    this.reserveSlot(best);
    this.urgentBySource.set(best.id, (this.urgentBySource.get(best.id) ?? 0) + 1);
    this.urgentInFlight += 1;
    this.startRequest(best, [block], ahead ? 'ahead' : 'seek');
  }

  /** Read-ahead requests on `source` go back to the queue (not failures): a seek needs the link. */
  private yieldReadAhead(source: BlockSource): void {
    for (const [hash, request] of this.active) {
      if (request.source.id !== source.id || !request.ahead || request.released) continue;
      const member = request.members.get(hash)!;
      if (member.unwanted || member.yielded) continue;
      member.yielded = true;
      this.abortIfAbandoned(request, new Error('a seek of this device needs the source first'));
    }
  }

  /** Background requests on `source` go back to the queue (not counted as failures): a reader needs the link. */
  private yieldBackground(source: BlockSource): void {
    for (const [hash, request] of this.active) {
      if (request.source.id !== source.id || request.urgent || request.released) continue;
      const member = request.members.get(hash)!;
      if (member.unwanted || member.yielded) continue;
      member.yielded = true;
      this.abortIfAbandoned(request, new Error('a read of this device needs the source first'));
    }
  }

  private reserveSlot(source: BlockSource): void {
    this.requestsInFlight += 1;
    this.loadBySource.set(source.id, (this.loadBySource.get(source.id) ?? 0) + 1);
  }

  // ------------------------------------------------------------ queues

  /** The best-ranked queued block, from `ready` and the heaps being looked at again. */
  private takeNext(): PendingBlock | null {
    for (;;) {
      let heap: MinHeap<QueueEntry> = this.ready;
      for (const other of this.recheck) {
        const top = other.peek();
        const best = heap.peek();
        if (top && (!best || top.block.rank < best.block.rank)) heap = other;
      }
      const entry = heap.pop();
      if (!entry) {
        this.recheck = [];
        return null;
      }
      if (heap !== this.ready && heap.size === 0) this.recheck = this.recheck.filter((other) => other !== heap);
      if (!this.isCurrent(entry)) continue;
      entry.block.token += 1;
      return entry.block;
    }
  }

  /**
   * Wakes that come faster than the parked blocks are looked at would pile up heaps, each
   * compared on every take: past a few, they are poured into one (dropping stale entries).
   */
  private boundRecheck(): void {
    if (this.recheck.length <= MAX_RECHECK_HEAPS) return;
    const merged = new MinHeap<QueueEntry>(byRank);
    for (const heap of this.recheck) for (let entry = heap.pop(); entry; entry = heap.pop()) if (this.isCurrent(entry)) merged.push(entry);
    this.recheck = merged.size > 0 ? [merged] : [];
  }

  private isCurrent(entry: QueueEntry): boolean {
    return entry.token === entry.block.token && this.pending.get(entry.block.want.hash) === entry.block;
  }

  /** Queues a block to be looked at: now, or after its backoff. */
  private enqueue(block: PendingBlock): void {
    const entry = { block, token: ++block.token };
    if (block.notBefore > this.now()) this.backoff.push(entry);
    else this.ready.push(entry);
  }

  /** Parks a block on every source it waits for a slot at (or, claimed by none, until wake). */
  private park(block: PendingBlock, sourceIds: readonly string[]): void {
    const entry = { block, token: ++block.token };
    if (sourceIds.length === 0) {
      this.unclaimed.push(entry);
      return;
    }
    for (const id of sourceIds) {
      let heap = this.parked.get(id);
      if (!heap) this.parked.set(id, (heap = new MinHeap<QueueEntry>(byRank)));
      heap.push(entry);
    }
  }

  /** A slot at `source` came free: the best block waiting for it is looked at again. */
  private unpark(source: BlockSource): void {
    const heap = this.parked.get(source.id);
    if (!heap) return;
    for (let entry = heap.pop(); entry; entry = heap.pop()) {
      if (!this.isCurrent(entry)) continue;
      this.ready.push(entry);
      break;
    }
    if (heap.size === 0) this.parked.delete(source.id);
  }

  /**
   * Before a batch leaves, blocks parked on its source join it while they fit and would
   * choose that source: a freed slot moves one block, the batch then takes its companions.
   */
  private topUp(batch: OpenBatch, sources: readonly BlockSource[], batches: Map<string, OpenBatch>): void {
    const heap = this.parked.get(batch.source.id);
    while (heap && heap.size > 0 && batch.blocks.length < batch.limit) {
      const entry = heap.pop()!;
      if (!this.isCurrent(entry)) continue;
      const { block } = entry;
      block.token += 1;
      const choice = this.fits(batch, block) ? this.chooseSource(block, sources, batches, false) : null;
      if (choice === null || choice === 'retry-later' || !('source' in choice) || choice.source !== batch.source) {
        this.enqueue(block);
        break;
      }
      this.addToBatch(batch, block);
    }
  }

  private releaseDue(now: number): void {
    for (let top = this.backoff.peek(); top && top.block.notBefore <= now; top = this.backoff.peek()) {
      this.backoff.pop();
      if (this.isCurrent(top)) this.ready.push(top);
    }
  }

  private continueLater(): void {
    this.continueTimer ??= setTimeout(() => {
      this.continueTimer = null;
      this.pump();
    }, 0);
  }

  // ------------------------------------------------------------ fetching

  /** Sends one request for `blocks` (one block: fetchBlock; more: fetchBlocks). Its slot is reserved already. */
  private startRequest(source: BlockSource, blocks: PendingBlock[], urgent: 'seek' | 'ahead' | false = false): void {
    const controller = new AbortController();
    const request: ActiveRequest = { source, controller, members: new Map(), settled: Promise.resolve(), released: false, urgent: urgent !== false, ahead: urgent === 'ahead', seek: urgent === 'seek' };
    if (request.ahead) this.aheadInFlight += 1;
    if (request.seek) this.seeksInFlight += 1;
    for (const block of blocks) {
      this.pending.delete(block.want.hash);
      request.members.set(block.want.hash, { block, unwanted: false, yielded: false });
      this.active.set(block.want.hash, request);
    }
    for (const block of blocks) this.options.events.started?.(block.want, source);
    const timeout = setTimeout(() => controller.abort(new Error('request timed out')), this.options.requestTimeoutMs ?? 120_000);
    request.settled = this.fetchAndStore(request)
      .catch((error: unknown) => {
        // A fault of ours (say, the local store failing) must not strand the blocks.
        for (const member of request.members.values()) this.fail(member, source, error);
      })
      .finally(() => {
        clearTimeout(timeout);
        for (const hash of request.members.keys()) if (this.active.get(hash) === request) this.active.delete(hash);
        this.releaseSlot(request);
        this.pump();
      });
  }

  private releaseSlot(request: ActiveRequest): void {
    if (request.released) return;
    request.released = true;
    this.requestsInFlight -= 1;
    this.loadBySource.set(request.source.id, (this.loadBySource.get(request.source.id) ?? 1) - 1);
    if (request.ahead) this.aheadInFlight -= 1;
    if (request.seek) this.seeksInFlight -= 1;
    if (request.urgent) this.endUrgent(request);
    this.unpark(request.source);
  }

  /** `request` stops counting as urgent (answered, or its readers gone). */
  private endUrgent(request: ActiveRequest): void {
    request.urgent = false;
    this.urgentInFlight -= 1;
    const left = (this.urgentBySource.get(request.source.id) ?? 1) - 1;
    this.urgentBySource.set(request.source.id, left);
    // Everything that waited for the source while it served urgent blocks is looked at again
    // (a freed slot unparks one block; the urgent fetch held back all of the source's slots).
    const waiting = left === 0 ? this.parked.get(request.source.id) : undefined;
    if (waiting) {
      this.parked.delete(request.source.id);
      this.recheck.push(waiting);
      this.boundRecheck();
    }
  }

  private async fetchAndStore(request: ActiveRequest): Promise<void> {
    const { source, controller, members } = request;
    const wants = [...members.values()].map((member) => member.block.want);
    let received: Map<BlockHash, Uint8Array>;
    try {
      received =
        wants.length === 1
          ? new Map([[wants[0].hash, await source.fetchBlock(wants[0], controller.signal)]])
          : await source.fetchBlocks!(wants, controller.signal);
    } catch (error) {
      // A piece that failed the server's piece hash is a lie like a whole block that does not match.
      if (error instanceof PieceMismatchError) this.penaliseLiar(source);
      for (const member of members.values()) this.fail(member, source, error);
      return;
    }
    let bytes = 0;
    for (const block of received.values()) bytes += block.length;
    this.processingBytes += bytes;
    // A peer's slot is held until its bytes are checked: a peer that lies gets no request
    // beyond what it already had in flight. The server's frees at once.
    if (source.kind === 'server') {
      this.releaseSlot(request);
      this.pump();
    }
    try {
      await Promise.all([...members.values()].map((member) => this.verifyAndStore(member, source, received.get(member.block.want.hash))));
    } finally {
      this.processingBytes -= bytes;
      // Nothing refers to the bytes any more (the store keeps none): a source may reuse their buffer.
      if (source.release) for (const block of received.values()) source.release(block);
    }
  }

  /** Hashes the bytes and stores them; a mismatch penalises a peer and sends the block elsewhere. */
  private async verifyAndStore(member: Member, source: BlockSource, bytes: Uint8Array | undefined): Promise<void> {
    const { want } = member.block;
    if (this.stopped || member.unwanted) return;
    if (!bytes) return this.fail(member, source, new BlockAbsentError(want.hash));
    const length = bytes.length;
    try {
      const { store } = this.options;
      // A store that hashes and stores in one step (off this thread) stores only matching bytes.
      const actual = store.putVerified ? await store.putVerified(want.hash, bytes) : await this.options.sha256(bytes);
      if (actual !== want.hash) {
        this.penaliseLiar(source);
        throw new HashMismatchError(want.hash, actual);
      }
      if (!store.putVerified) await store.putBlock(want.hash, bytes);
    } catch (error) {
      return this.fail(member, source, error);
    }
    this.urgent.delete(want.hash);
    this.ahead.delete(want.hash);
    this.options.events.stored?.(want, length, source);
  }

  private fail(member: Member, source: BlockSource, error: unknown): void {
    if (this.stopped || member.unwanted) return;
    const { block } = member;
    if (!member.yielded) {
      this.options.events.failed?.(block.want, source, error);
      block.tried.add(source.id);
      block.attempts += 1;
      if (!isTransient(error) && source.kind === 'server') {
        // The server refused outright (403/404): asking again soon will not help.
        block.notBefore = this.now() + MAX_BACKOFF_MS;
      }
    }
    if (this.pending.has(block.want.hash)) return;
    this.pending.set(block.want.hash, block);
    this.enqueue(block);
  }

  /** A block wanted again while its fetch is in flight keeps that fetch. */
  private rewant(hash: BlockHash): boolean {
    const member = this.active.get(hash)?.members.get(hash);
    if (!member) return false;
    member.unwanted = false;
    return true;
  }

  private dropActive(hashes: readonly BlockHash[]): void {
    for (const hash of hashes) {
      const request = this.active.get(hash);
      const member = request?.members.get(hash);
      if (!request || !member) continue;
      member.unwanted = true;
      this.abortIfAbandoned(request);
    }
  }

  /** Aborts a request once none of its blocks is still wanted from it. */
  private abortIfAbandoned(request: ActiveRequest, reason?: Error): void {
    for (const member of request.members.values()) if (!member.unwanted && !member.yielded) return;
    request.controller.abort(reason);
  }

  private armRetryTimer(now: number): void {
    let top = this.backoff.peek();
    while (top && !this.isCurrent(top)) {
      this.backoff.pop();
      top = this.backoff.peek();
    }
    const at = top?.block.notBefore ?? Infinity;
    if (at === this.retryAt && this.retryTimer) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = at;
    if (at === Infinity || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryAt = Infinity;
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

function newBlock(want: WantedBlock): PendingBlock {
  return { want, rank: 0, tried: new Set(), attempts: 0, notBefore: 0, token: 0 };
}
