import { SendBufferTarget } from './send-buffer-target.ts';
import {
  BLOCK_CHUNK_SIZE,
  DATA_HEADER_SIZE,
  FEATURE_RANGE_REQUESTS,
  MAX_BLOCK_SIZE,
  MAX_DATA_BYTES,
  MAX_HAVE_HASHES,
  MAX_REQUEST_ID,
  ValidationError,
  decodeFrame,
  encodeDataHead,
  encodeFrame,
  type BlockHash,
  type DataFrame,
  type EndFrame,
  type Frame,
  type NackReason,
  type NamespaceId,
} from '../protocol/index.ts';
import { POOLED_BLOCK_MIN, type BlockBufferPool } from './block-buffers.ts';
import type { BlockLookup, BlockServer } from './block-server.ts';
import type { FrameChannel } from './frame-channel.ts';

/** The peer refused a request (NACK). */
export class PeerNackError extends Error {
  override readonly name = 'PeerNackError';
  constructor(readonly reason: NackReason) {
    super(`peer refused the block: ${reason}`);
  }
}

/** The link could not complete a request: not open, closed, stalled, or too many requests. */
export class PeerLinkError extends Error {
  override readonly name = 'PeerLinkError';
  constructor(
    readonly code: 'not_open' | 'closed' | 'stalled' | 'too_many',
    message: string,
  ) {
    super(message);
  }
}

export interface PeerLinkOptions {
  channel: FrameChannel;
  /** Namespaces the relay said this device and the peer share (update with setSharedNamespaces). */
  sharedNamespaces?: Iterable<NamespaceId>;
  /** Answers the peer's requests; without one every request is refused as forbidden. */
  server?: BlockServer | null;
  /** A request fails when nothing arrived for it (or, while queued, on the link) this long. */
  stallTimeoutMs?: number;
  /** Requests from the peer queued or being served at once; more are refused as busy. */
  maxServing?: number;
  /** Our own requests outstanding at once. */
  maxRequests?: number;
  /**
   * Stop sending block data while the channel buffers more than this… (at most: on a channel
   * that drains slower, what it takes in 50 ms, down to `minHighWaterMark`: SendBufferTarget)
   */
  highWaterMark?: number;
  minHighWaterMark?: number;
  /** …and resume once it is down to this. */
  lowWaterMark?: number;
  /**
   * While a reader's request (REQUEST_FROM) waits for its block to be read, a block already
   * being sent keeps at most this much in the channel's buffer: what is buffered when the
   * reader's block is ready goes out ahead of it.
   */
  readerWaitMark?: number;
  /**
   * How often to poll bufferedAmount while paused, until the channel has fired
   * bufferedamountlow once (some never do); after that the event leads and a poll every
   * `eventPollMs` only guards against a missed one.
   */
  pollMs?: number;
  eventPollMs?: number;
  /** Payload bytes per DATA frame when serving. */
  chunkSize?: number;
  /** Block hashes remembered from the peer's HAVE frames (oldest forgotten first). */
  maxAnnounced?: number;
  /**
   * Buffers that blocks of at least POOLED_BLOCK_MIN bytes (by size hint) are received into,
   * instead of a new buffer per block; the caller hands each back (`pool.give`) once it is
   * done with the bytes. Buffers of requests that fail go back at once.
   */
  buffers?: BlockBufferPool | null;
  /** The peer sent something malformed; the link is closed already. Penalise the peer. */
  onProtocolError?: (error: ValidationError) => void;
  /** The peer announced blocks of a shared namespace (already recorded for `peerHas`). */
  onHave?: (ns: NamespaceId, hashes: readonly BlockHash[]) => void;
  /** The peer is fetching these blocks of a shared namespace from the server (FETCHING). */
  onFetching?: (ns: NamespaceId, hashes: readonly BlockHash[]) => void;
  onOpen?: () => void;
  onClose?: () => void;
  now?: () => number;
}

/** Watches one request's answer as it arrives. */
export interface ChunkWatch {
  /** Each chunk, in order: its offset in the block and a view valid only during the call. */
  onChunk(offset: number, bytes: Uint8Array): void;
  /** Set by the link while the request is in flight: copies of the runs received so far, in arrival order. */
  receivedSoFar?: () => Array<{ offset: number; bytes: Uint8Array }>;
}

interface ClientRequest {
  id: number;
  watch: ChunkWatch | null;
  sizeHint: number;
  buffer: Uint8Array | null;
  /** Bytes received in all. */
  received: number;
  /** REQUEST_FROM: where the answer starts (0 for a plain REQUEST, or a reader's request from 0). */
  from: number;
  /** Offset the next chunk must have (or 0 once, at the block's end, when `from` > 0). */
  next: number;
  /** The block's length, once a rotated answer wrapped to 0. */
  wrappedAt: number | null;
  sentAt: number;
  lastFrameAt: number;
  resolve: (bytes: Uint8Array) => void;
  reject: (error: unknown) => void;
  cleanup: () => void;
}

interface ServedRequest {
  id: number;
  ns: NamespaceId;
  hash: BlockHash;
  /** REQUEST_FROM: a reader waits (served before plain requests), bytes from here first. */
  from: number | null;
  cancelled: boolean;
  lookup: Promise<BlockLookup> | null;
  /** The lookup's answer once it settled (a reader's block is sent as soon as this is set). */
  looked: BlockLookup | null;
}

const DEFAULTS = {
  stallTimeoutMs: 15_000,
  maxServing: 16,
  maxRequests: 16,
  highWaterMark: 1024 * 1024,
  lowWaterMark: 256 * 1024,
  minHighWaterMark: 128 * 1024,
  readerWaitMark: 64 * 1024,
  pollMs: 5,
  eventPollMs: 50,
  maxAnnounced: 100_000,
};

/**
 * One link to one remote peer over a FrameChannel, both ways at once. As a client it
 * fetches blocks (`request`), several multiplexed by id; as a server it answers the peer's
 * requests through the BlockServer rule, one block at a time in arrival order (the next
 * one read ahead), pausing while the channel's buffer is full. Every frame from the peer
 * is decoded strictly; anything malformed closes the link and is reported.
 */
export class PeerLink {
  private readonly channel: FrameChannel;
  private readonly opts: typeof DEFAULTS & { chunkSize: number };
  private readonly now: () => number;
  private shared: Set<NamespaceId>;
  private closed = false;

  private nextId = 1;
  private idsWrapped = false;
  private readonly requests = new Map<number, ClientRequest>();
  private stallTimer: ReturnType<typeof setInterval> | null = null;
  private lastFrameAt: number;

  private readonly serveQueue: ServedRequest[] = [];
  private readonly serving = new Map<number, ServedRequest>();
  private serveLoopRunning = false;
  private drainWaiters: Array<{ below: number; resolve: () => void }> = [];
  private drainTimer: ReturnType<typeof setTimeout> | null = null;
  /** The channel has fired bufferedamountlow: on a channel that fires it at the threshold, waits are led by it, not by the poll. */
  private lowEventsSeen = false;
  private readonly sendBuffer: SendBufferTarget;
  /** Where DATA frames are built on a channel that copies what it sends (`copiesOnSend`). */
  private frameScratch: Uint8Array<ArrayBuffer> | null = null;

  /**
   * The request whose DATA payload the channel is writing into its buffer right now (a
   * channel with a dataSink), and whether it finished meanwhile: its buffer then goes back to
   * the pool only once the channel stopped writing into it.
   */
  private direct: { request: ClientRequest; offset: number; length: number; finished: boolean } | null = null;

  /** `${ns}/${hash}` of blocks the peer announced, oldest first. */
  private readonly announced = new Set<string>();
  /** The peer announced FEATURE_RANGE_REQUESTS: it understands REQUEST_FROM. */
  private peerTakesRangeRequests = false;
  private featuresAnnounced = false;

  bytesReceived = 0;
  bytesSent = 0;
  blocksServed = 0;

  constructor(private readonly options: PeerLinkOptions) {
    this.channel = options.channel;
    this.now = options.now ?? (() => Date.now());
    this.opts = {
      stallTimeoutMs: options.stallTimeoutMs ?? DEFAULTS.stallTimeoutMs,
      maxServing: options.maxServing ?? DEFAULTS.maxServing,
      maxRequests: options.maxRequests ?? DEFAULTS.maxRequests,
      highWaterMark: options.highWaterMark ?? DEFAULTS.highWaterMark,
      lowWaterMark: options.lowWaterMark ?? DEFAULTS.lowWaterMark,
      minHighWaterMark: options.minHighWaterMark ?? DEFAULTS.minHighWaterMark,
      readerWaitMark: Math.min(options.readerWaitMark ?? DEFAULTS.readerWaitMark, options.lowWaterMark ?? DEFAULTS.lowWaterMark),
      pollMs: options.pollMs ?? DEFAULTS.pollMs,
      eventPollMs: options.eventPollMs ?? DEFAULTS.eventPollMs,
      maxAnnounced: options.maxAnnounced ?? DEFAULTS.maxAnnounced,
      chunkSize: Math.max(1, Math.min(MAX_DATA_BYTES, options.chunkSize ?? BLOCK_CHUNK_SIZE)),
    };
    this.shared = new Set(options.sharedNamespaces ?? []);
    this.lastFrameAt = this.now();
    const highWaterMark = this.opts.highWaterMark;
    this.sendBuffer = new SendBufferTarget(Math.min(this.opts.minHighWaterMark, highWaterMark), highWaterMark);
    this.channel.onmessage = (bytes) => this.receive(bytes);
    this.channel.onbufferedamountlow = () => {
      this.lowEventsSeen = true;
      this.checkDrained();
    };
    this.channel.onclose = () => this.teardown();
    if ('dataSink' in this.channel) {
      this.channel.dataSink = { begin: (id, offset, length) => this.beginDirectData(id, offset, length), end: () => this.endDirectData() };
    }
    this.channel.onopen = () => {
      if (this.closed) return;
      this.announceFeatures();
      this.options.onOpen?.();
    };
    if (this.channel.isOpen) queueMicrotask(() => this.announceFeatures());
  }

  /** Whether the peer said it understands REQUEST_FROM (reader requests, served first, from an offset). */
  get takesRangeRequests(): boolean {
    return this.peerTakesRangeRequests;
  }

  /** Tells the peer, once per link, that we understand REQUEST_FROM (a HAVE of the feature hash). */
  private announceFeatures(): void {
    if (this.featuresAnnounced || !this.isOpen) return;
    this.featuresAnnounced = true;
    for (const ns of this.shared) this.sendRaw(encodeFrame({ type: 'have', ns, hashes: [FEATURE_RANGE_REQUESTS] }));
  }

  get isOpen(): boolean {
    return !this.closed && this.channel.isOpen;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Our requests waiting for an answer. */
  get pendingRequests(): number {
    return this.requests.size;
  }

  /** More requests this link may send now (our bound, which matches what a peer serves at once). */
  get requestRoom(): number {
    return this.isOpen ? Math.max(0, this.opts.maxRequests - this.requests.size) : 0;
  }

  /** The peer's requests queued or being served. */
  get servingRequests(): number {
    return this.serving.size;
  }

  sharedNamespaces(): ReadonlySet<NamespaceId> {
    return this.shared;
  }

  /** The relay's latest word on what we share; requests for other namespaces are refused. */
  setSharedNamespaces(namespaces: Iterable<NamespaceId>): void {
    this.shared = new Set(namespaces);
    for (const key of this.announced) {
      if (!this.shared.has(key.slice(0, key.indexOf('/')) as NamespaceId)) this.announced.delete(key);
    }
  }

  /** Whether the peer announced (HAVE) that it holds this block. */
  peerHas(ns: NamespaceId, hash: BlockHash): boolean {
    return this.announced.has(`${ns}/${hash}`);
  }

  /**
   * Fetches one block's bytes (unverified: the caller checks the hash). Rejects with
   * PeerNackError, PeerLinkError, or the signal's reason on abort (the peer is told to stop).
   * `from` (a multiple of REQUEST_FROM_ALIGNMENT) marks a reader's request: to a peer that
   * takes range requests it goes as REQUEST_FROM (served before the peer's queue, its bytes
   * from `from` first); to others as a plain REQUEST.
   */
  request(ns: NamespaceId, hash: BlockHash, signal?: AbortSignal, sizeHint = 0, watch: ChunkWatch | null = null, from: number | null = null): Promise<Uint8Array> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (!this.isOpen) return Promise.reject(new PeerLinkError(this.closed ? 'closed' : 'not_open', 'peer link is not open'));
    if (this.requests.size >= this.opts.maxRequests) {
      return Promise.reject(new PeerLinkError('too_many', `at most ${this.opts.maxRequests} requests per peer`));
    }
    const id = this.takeId();
    let frame: Uint8Array<ArrayBuffer>;
    try {
      frame = from !== null && this.peerTakesRangeRequests ? encodeFrame({ type: 'request-from', id, from, ns, hash }) : encodeFrame({ type: 'request', id, ns, hash });
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const now = this.now();
      const onAbort = () => {
        if (this.requests.get(id) !== request) return;
        this.finishRequest(request);
        this.sendQuietly({ type: 'cancel', id });
        reject(signal!.reason);
      };
      const request: ClientRequest = {
        id,
        watch,
        sizeHint: Number.isInteger(sizeHint) && sizeHint > 0 ? Math.min(sizeHint, MAX_BLOCK_SIZE) : 0,
        buffer: null,
        received: 0,
        from: from !== null && this.peerTakesRangeRequests ? from : 0,
        next: from !== null && this.peerTakesRangeRequests ? from : 0,
        wrappedAt: null,
        sentAt: now,
        lastFrameAt: now,
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      this.requests.set(id, request);
      if (watch) watch.receivedSoFar = () => this.receivedRuns(request);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.armStallTimer();
      if (!this.sendRaw(frame)) {
        this.finishRequest(request);
        reject(new PeerLinkError('closed', 'peer link closed'));
      }
    });
  }

  /** The caller is done with bytes `request` resolved with: a pooled buffer goes back to the pool. */
  release(bytes: Uint8Array): void {
    this.options.buffers?.give(bytes);
  }

  /** Tells the peer we hold these blocks of a shared namespace (beyond our advertised cursor). */
  sendHave(ns: NamespaceId, hashes: readonly BlockHash[]): void {
    if (!this.isOpen || !this.shared.has(ns)) return;
    for (let i = 0; i < hashes.length; i += MAX_HAVE_HASHES) {
      if (!this.sendRaw(encodeFrame({ type: 'have', ns, hashes: hashes.slice(i, i + MAX_HAVE_HASHES) }))) return;
    }
  }

  /** Tells the peer we are fetching these blocks from the server: it may wait for our HAVE. */
  sendFetching(ns: NamespaceId, hashes: readonly BlockHash[]): void {
    if (!this.isOpen || !this.shared.has(ns)) return;
    for (let i = 0; i < hashes.length; i += MAX_HAVE_HASHES) {
      if (!this.sendRaw(encodeFrame({ type: 'fetching', ns, hashes: hashes.slice(i, i + MAX_HAVE_HASHES) }))) return;
    }
  }

  /** Refuses what the peer still waits for (shutting_down), rejects our requests, closes. */
  close(): void {
    if (this.closed) return;
    if (this.channel.isOpen) {
      for (const served of [...this.serving.values()]) this.sendQuietly({ type: 'nack', id: served.id, reason: 'shutting_down' });
    }
    this.teardown();
  }

  // ------------------------------------------------------------ receiving

  private receive(message: Uint8Array): void {
    if (this.closed) return;
    this.lastFrameAt = this.now();
    try {
      this.dispatch(decodeFrame(message));
    } catch (error) {
      if (error instanceof ValidationError) return this.fail(error);
      // A fault of ours (say, out of memory), not the peer's: close without blaming it.
      this.teardown();
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  private dispatch(frame: Frame): void {
    switch (frame.type) {
      case 'request':
        return this.onRequest(frame.id, frame.ns, frame.hash, null);
      case 'request-from':
        return this.onRequest(frame.id, frame.ns, frame.hash, frame.from);
      case 'cancel':
        return this.onCancel(frame.id);
      case 'data':
        return this.onData(frame);
      case 'end':
        return this.onEnd(frame);
      case 'nack': {
        const request = this.answeredRequest(frame.id, 'nack');
        if (!request) return;
        this.finishRequest(request);
        request.reject(new PeerNackError(frame.reason));
        return;
      }
      case 'have':
        return this.onHaveFrame(frame.ns, frame.hashes);
      case 'fetching':
        if (!this.shared.has(frame.ns)) return;
        try {
          this.options.onFetching?.(frame.ns, frame.hashes);
        } catch (error) {
          queueMicrotask(() => {
            throw error;
          });
        }
        return;
    }
  }

  /** The request an answer is for; null for one we gave up on; throws for ids never issued. */
  private answeredRequest(id: number, kind: string): ClientRequest | null {
    const request = this.requests.get(id);
    if (request) return request;
    if (!this.idsWrapped && id >= this.nextId) throw new ValidationError(`${kind}.id`, 'answers a request never made');
    return null;
  }

  private onData(frame: DataFrame): void {
    const request = this.answeredRequest(frame.id, 'data');
    if (!request) return;
    const buffer = this.receiveBuffer(request, frame.offset, frame.bytes.length);
    buffer.set(frame.bytes, frame.offset);
    this.received(request, frame.offset, frame.bytes.length);
  }

  /**
   * The buffer a request's next `length` bytes at `offset` go into (pooled, or grown to fit).
   * Throws ValidationError for a chunk out of order or past the largest block. An answer to
   * REQUEST_FROM wraps to 0 once (the block's end), then must not pass where it began.
   */
  private receiveBuffer(request: ClientRequest, offset: number, length: number): Uint8Array {
    if (offset !== request.next) {
      if (request.from > 0 && request.wrappedAt === null && request.received > 0 && offset === 0) request.wrappedAt = request.next;
      else throw new ValidationError('data.offset', `must be ${request.next}: chunks arrive in order without gaps`);
    }
    if (length < 1 || offset > MAX_BLOCK_SIZE - length) throw new ValidationError('data.offset', `chunk ends past ${MAX_BLOCK_SIZE} bytes`);
    const end = offset + length;
    if (request.wrappedAt !== null && end > request.from) throw new ValidationError('data.offset', `passes ${request.from}, where the answer began`);
    let buffer = request.buffer;
    const pool = this.options.buffers;
    if (!buffer && pool && request.sizeHint >= POOLED_BLOCK_MIN && request.sizeHint <= pool.size) {
      buffer = request.buffer = new Uint8Array(pool.take());
    }
    if (!buffer || end > buffer.length) {
      const size = Math.min(MAX_BLOCK_SIZE, Math.max(end, request.sizeHint, buffer ? buffer.length * 2 : 0));
      const grown = new Uint8Array(size);
      // A rotated answer holds bytes past `received`: keep the whole buffer.
      if (buffer) grown.set(buffer);
      if (buffer) this.options.buffers?.give(buffer);
      buffer = request.buffer = grown;
    }
    return buffer;
  }

  private received(request: ClientRequest, offset: number, length: number): void {
    request.received += length;
    request.next = offset + length;
    request.lastFrameAt = this.lastFrameAt;
    this.bytesReceived += length;
    if (request.watch && request.buffer) {
      try {
        request.watch.onChunk(offset, request.buffer.subarray(offset, offset + length));
      } catch (error) {
        // The listener's fault, not the peer's: report it elsewhere.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /**
   * The channel's DataPayloadSink: a DATA frame's payload is about to be written. Checked like
   * `onData` (a bad frame closes the link and is reported); the payload's place in the
   * request's buffer, or null for a frame to be dropped or decoded as a message.
   */
  private beginDirectData(id: number, offset: number, length: number): Uint8Array | null {
    if (this.closed) return null;
    this.lastFrameAt = this.now();
    try {
      const request = this.answeredRequest(id, 'data');
      if (!request) return null;
      const buffer = this.receiveBuffer(request, offset, length);
      this.direct = { request, offset, length, finished: false };
      return buffer.subarray(offset, offset + length);
    } catch (error) {
      if (error instanceof ValidationError) this.fail(error);
      else throw error;
      return null;
    }
  }

  private endDirectData(): void {
    const direct = this.direct;
    this.direct = null;
    if (!direct) return;
    this.lastFrameAt = this.now();
    if (direct.finished) {
      // Abandoned while its bytes were still arriving: now nothing writes into the buffer.
      if (direct.request.buffer) this.options.buffers?.give(direct.request.buffer);
      direct.request.buffer = null;
      return;
    }
    this.received(direct.request, direct.offset, direct.length);
  }

  private onEnd(frame: EndFrame): void {
    const request = this.answeredRequest(frame.id, 'end');
    if (!request) return;
    if (frame.totalLength !== request.received) {
      throw new ValidationError('end.totalLength', `is ${frame.totalLength} but ${request.received} bytes arrived`);
    }
    if (request.from > 0 && (request.wrappedAt !== frame.totalLength || request.next !== request.from)) {
      throw new ValidationError('end', `an answer from ${request.from} must end where it began, after wrapping at the block's end`);
    }
    const buffer = request.buffer ?? new Uint8Array(0);
    const pooled = this.options.buffers?.owns(buffer) === true;
    // A pooled buffer is handed over as it is (the caller gives it back), unless the block
    // turned out small: then its bytes are copied out and the buffer returns at once.
    const keepPooled = pooled && request.received >= POOLED_BLOCK_MIN;
    if (keepPooled) request.buffer = null;
    this.finishRequest(request);
    if (keepPooled) request.resolve(buffer.subarray(0, request.received));
    else request.resolve(buffer.length === request.received && !pooled ? buffer : buffer.slice(0, request.received));
  }

  private onHaveFrame(ns: NamespaceId, announced: readonly BlockHash[]): void {
    // The relay may tell the two sides about a namespace at slightly different moments.
    if (!this.shared.has(ns)) return;
    const hashes = announced.filter((hash) => hash !== FEATURE_RANGE_REQUESTS);
    if (hashes.length < announced.length) this.peerTakesRangeRequests = true;
    if (hashes.length === 0) return;
    for (const hash of hashes) {
      const key = `${ns}/${hash}`;
      this.announced.delete(key);
      this.announced.add(key);
    }
    while (this.announced.size > this.opts.maxAnnounced) {
      this.announced.delete(this.announced.values().next().value!);
    }
    try {
      this.options.onHave?.(ns, hashes);
    } catch (error) {
      // Our own callback failing is no fault of the peer's: report it elsewhere.
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  // ------------------------------------------------------------ client bookkeeping

  private takeId(): number {
    const id = this.nextId;
    if (id >= MAX_REQUEST_ID) {
      this.nextId = 1;
      this.idsWrapped = true;
    } else {
      this.nextId = id + 1;
    }
    return id;
  }

  /** Copies of what a request received so far, as runs in arrival order (two once a rotated answer wrapped). */
  private receivedRuns(request: ClientRequest): Array<{ offset: number; bytes: Uint8Array }> {
    const buffer = request.buffer;
    if (this.requests.get(request.id) !== request || !buffer || request.received === 0) return [];
    if (request.wrappedAt === null) return [{ offset: request.from, bytes: buffer.slice(request.from, request.next) }];
    return [
      { offset: request.from, bytes: buffer.slice(request.from, request.wrappedAt) },
      { offset: 0, bytes: buffer.slice(0, request.next) },
    ];
  }

  private finishRequest(request: ClientRequest): void {
    this.requests.delete(request.id);
    request.cleanup();
    if (this.direct?.request === request) {
      // The channel is still writing a frame into its buffer: it goes back once that ends.
      this.direct.finished = true;
    } else {
      if (request.buffer) this.options.buffers?.give(request.buffer);
      request.buffer = null;
    }
    if (this.requests.size === 0 && this.stallTimer) {
      clearInterval(this.stallTimer);
      this.stallTimer = null;
    }
  }

  private armStallTimer(): void {
    if (this.stallTimer) return;
    const period = Math.max(10, Math.min(1000, Math.floor(this.opts.stallTimeoutMs / 4)));
    this.stallTimer = setInterval(() => this.checkStalls(), period);
  }

  private checkStalls(): void {
    const now = this.now();
    for (const request of [...this.requests.values()]) {
      // Before its first chunk a request waits its turn behind others: the link's activity
      // counts. Once started, only its own frames do.
      const since = request.received > 0 ? request.lastFrameAt : Math.max(request.sentAt, this.lastFrameAt);
      if (now - since < this.opts.stallTimeoutMs) continue;
      this.finishRequest(request);
      this.sendQuietly({ type: 'cancel', id: request.id });
      request.reject(new PeerLinkError('stalled', `no data from the peer for ${this.opts.stallTimeoutMs} ms`));
    }
  }

  // ------------------------------------------------------------ serving

  private onRequest(id: number, ns: NamespaceId, hash: BlockHash, from: number | null): void {
    if (this.serving.has(id)) throw new ValidationError('request.id', 'is already in use');
    if (!this.options.server) return this.sendQuietly({ type: 'nack', id, reason: 'forbidden' });
    if (!this.shared.has(ns)) return this.sendQuietly({ type: 'nack', id, reason: 'forbidden' });
    if (this.serving.size >= this.opts.maxServing) return this.sendQuietly({ type: 'nack', id, reason: 'busy' });
    const served: ServedRequest = { id, ns, hash, from, cancelled: false, lookup: null, looked: null };
    this.serving.set(id, served);
    if (from === null) this.serveQueue.push(served);
    else {
      // A reader waits: before every plain request still queued, after earlier readers'. Its
      // block is read at once, and the block being sent steps aside for it (sendBlock).
      const at = this.serveQueue.findIndex((queued) => queued.from === null);
      this.serveQueue.splice(at < 0 ? this.serveQueue.length : at, 0, served);
      void this.startLookup(served).then(() => this.wakeSenders());
    }
    void this.serveLoop();
  }

  private onCancel(id: number): void {
    const served = this.serving.get(id);
    if (!served) return; // finished already, or never accepted
    served.cancelled = true;
    this.serving.delete(id);
    const index = this.serveQueue.indexOf(served);
    if (index < 0) return;
    this.serveQueue.splice(index, 1);
    // A reader's block read ahead of its turn and never sent: the store may reuse its buffer.
    if (served.looked?.ok) this.options.server?.release(served.looked.bytes);
  }

  private startLookup(served: ServedRequest): Promise<BlockLookup> {
    if (!served.lookup) {
      served.lookup = this.options.server!
        .lookup(served.ns, served.hash, this.shared)
        .catch((): BlockLookup => ({ ok: false, reason: 'busy' }))
        .then((result) => (served.looked = result));
    }
    return served.lookup;
  }

  /** Answers one request whose block was looked up: the block, or why not. */
  private async answer(served: ServedRequest, result: BlockLookup): Promise<void> {
    if (served.cancelled || this.closed) return;
    if (!this.shared.has(served.ns)) this.sendQuietly({ type: 'nack', id: served.id, reason: 'forbidden' });
    else if (!result.ok) this.sendQuietly({ type: 'nack', id: served.id, reason: result.reason });
    else await this.sendBlock(served, result.bytes);
    if (this.serving.get(served.id) === served) this.serving.delete(served.id);
  }

  /** The first queued request if it is a reader's: plain requests never jump the queue. */
  private waitingReader(): ServedRequest | null {
    const first = this.serveQueue[0];
    return first && first.from !== null ? first : null;
  }

  /**
   * Between two chunks of a block: every reader queued since it started whose block is ready
   * is answered now, whole, ahead of the rest of this block (DATA frames carry their request's
   * id and offset, so answers may interleave). An earlier reader's block steps aside too: the
   * newest reader is the one a user waits on now (the earlier one moved on, or is past its
   * offset and finishing the wrap to the block's start).
   */
  private async answerReadyReaders(): Promise<void> {
    for (let reader = this.waitingReader(); reader?.looked && !this.closed; reader = this.waitingReader()) {
      this.serveQueue.shift();
      await this.answer(reader, reader.looked);
    }
  }

  private async serveLoop(): Promise<void> {
    if (this.serveLoopRunning) return;
    this.serveLoopRunning = true;
    try {
      while (!this.closed && this.serveQueue.length > 0) {
        const served = this.serveQueue.shift()!;
        const lookup = this.startLookup(served);
        // Read the next block while this one is on the wire.
        if (this.serveQueue.length > 0) void this.startLookup(this.serveQueue[0]);
        const result = await lookup;
        await this.answer(served, result);
      }
    } finally {
      this.serveLoopRunning = false;
    }
  }

  private async sendBlock(served: ServedRequest, bytes: Uint8Array): Promise<void> {
    const { chunkSize } = this.opts;
    const from = served.from ?? 0;
    if (from >= bytes.length && from > 0) return this.sendQuietly({ type: 'nack', id: served.id, reason: 'bad_request' });
    // From `from` to the end, then from the start up to `from`.
    const runs = from > 0 ? [[from, bytes.length], [0, from]] : [[0, bytes.length]];
    const last = runs[runs.length - 1];
    for (const [start, end] of runs) {
      for (let offset = start; offset < end; offset += chunkSize) {
        await this.answerReadyReaders();
        this.sampleSendBuffer();
        for (let marks = this.bufferMarks(); !this.closed && this.channel.bufferedAmount > marks.stopAbove; marks = this.bufferMarks()) {
          await this.bufferBelow(marks.resumeBelow);
          await this.answerReadyReaders();
        }
        if (served.cancelled || this.closed) return;
        const chunkEnd = Math.min(end, offset + chunkSize);
        const chunk = bytes.subarray(offset, chunkEnd);
        // Once the stream is done with the block's last frame it is done with all of them.
        const lastFrame = end === last[1] && chunkEnd === end;
        const onSent = lastFrame ? () => this.options.server?.release(bytes) : undefined;
        if (!this.sendDataFrame(served.id, offset, chunk, onSent)) return;
        this.bytesSent += chunk.length;
        // A channel that copies what it sends holds nothing of the block once its last frame is out.
        if (lastFrame && !this.channel.sendData && this.channel.copiesOnSend) this.options.server?.release(bytes);
      }
    }
    if (this.sendRaw(encodeFrame({ type: 'end', id: served.id, totalLength: bytes.length }))) this.blocksServed += 1;
  }

  /**
   * Resolves once the channel buffers at most `below` bytes, the link closed, or a reader's
   * block is ready to go out (wakeSenders): callers check again why they woke.
   */
  private bufferBelow(below: number): Promise<void> {
    return new Promise((resolve) => {
      this.drainWaiters.push({ below, resolve });
      this.aimLowEvent();
      // Drained already (before the threshold moved, so no event will come).
      this.checkDrained();
      if (this.drainWaiters.length > 0) this.pollDrain();
    });
  }

  /**
   * The channel's bufferedamountlow fires where the lowest waiter wants to resume. *Why:* with
   * a fixed threshold above the adaptive resume mark, the event came too early and a 5 ms poll
   * did the waking, 200 wakeups a second of a serving worker for the whole transfer.
   */
  private aimLowEvent(): void {
    let lowest = Infinity;
    for (const waiter of this.drainWaiters) lowest = Math.min(lowest, waiter.below);
    if (lowest !== Infinity && this.channel.bufferedAmountLowThreshold !== lowest) this.channel.bufferedAmountLowThreshold = lowest;
  }

  private wakeSenders(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const waiter of waiters) waiter.resolve();
  }

  private pollDrain(): void {
    if (this.drainTimer) return;
    this.drainTimer = setTimeout(() => {
      this.drainTimer = null;
      this.checkDrained();
      if (this.drainWaiters.length > 0) this.pollDrain();
    }, this.lowEventsSeen && this.channel.lowEventAtThreshold ? this.opts.eventPollMs : this.opts.pollMs);
  }

  /** When block data stops and resumes: while a reader's block is being read, little of another stays ahead of it. */
  private bufferMarks(): { stopAbove: number; resumeBelow: number } {
    if (this.waitingReader()) return { stopAbove: this.opts.readerWaitMark, resumeBelow: this.opts.readerWaitMark };
    return { stopAbove: this.sendBuffer.highWaterMark, resumeBelow: this.sendBuffer.lowWaterMark };
  }

  /** Payload bytes stand for all that was queued: frame heads and control frames are a rounding error in the rate. */
  private sampleSendBuffer(): void {
    this.sendBuffer.sample(this.now(), this.bytesSent, this.channel.bufferedAmount);
  }

  private checkDrained(): void {
    this.sampleSendBuffer();
    const buffered = this.channel.bufferedAmount;
    const ready = this.drainWaiters.filter((waiter) => this.closed || buffered <= waiter.below);
    if (ready.length === 0) return;
    this.drainWaiters = this.drainWaiters.filter((waiter) => !ready.includes(waiter));
    if (this.drainWaiters.length === 0 && this.drainTimer) {
      clearTimeout(this.drainTimer);
      this.drainTimer = null;
    }
    for (const waiter of ready) waiter.resolve();
  }

  // ------------------------------------------------------------ sending and closing

  /** Sends one encoded frame; on a channel failure closes the link and returns false. */
  private sendRaw(bytes: Uint8Array<ArrayBuffer>): boolean {
    if (this.closed) return false;
    try {
      this.channel.send(bytes);
      return true;
    } catch {
      this.teardown();
      return false;
    }
  }

  /**
   * One DATA frame; head and payload apart where the channel takes them so (no copy). On a
   * channel that copies what it sends, every frame is built in one reused buffer: a new frame
   * per 64 KiB chunk was 4 MiB of garbage per block served.
   */
  private sendDataFrame(id: number, offset: number, chunk: Uint8Array, onSent?: () => void): boolean {
    if (!this.channel.sendData) {
      if (!this.channel.copiesOnSend) return this.sendRaw(encodeFrame({ type: 'data', id, offset, bytes: chunk }));
      const size = DATA_HEADER_SIZE + chunk.length;
      if (!this.frameScratch || this.frameScratch.length < size) this.frameScratch = new Uint8Array(Math.max(size, DATA_HEADER_SIZE + this.opts.chunkSize));
      const frame = this.frameScratch.subarray(0, size);
      frame.set(encodeDataHead(id, offset, chunk.length));
      frame.set(chunk, DATA_HEADER_SIZE);
      return this.sendRaw(frame);
    }
    if (this.closed) return false;
    try {
      this.channel.sendData(encodeDataHead(id, offset, chunk.length), chunk, onSent);
      return true;
    } catch {
      this.teardown();
      return false;
    }
  }

  private sendQuietly(frame: Frame): void {
    if (this.channel.isOpen) this.sendRaw(encodeFrame(frame));
  }

  private fail(error: ValidationError): void {
    if (this.closed) return;
    this.teardown();
    this.options.onProtocolError?.(error);
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.channel.close();
    } catch {
      // closing an already failed channel
    }
    for (const request of [...this.requests.values()]) {
      this.finishRequest(request);
      request.reject(new PeerLinkError('closed', 'peer link closed'));
    }
    for (const served of this.serving.values()) served.cancelled = true;
    this.serving.clear();
    this.serveQueue.length = 0;
    this.announced.clear();
    this.checkDrained();
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.stallTimer = null;
    this.options.onClose?.();
  }
}
