import type { Socket } from 'node:net';
import type { FrameChannel } from '../../engine/frame-channel.ts';
import { FRAME_VERSION, FrameType, NACK_REASONS, ValidationError, type NackReason } from '../../protocol/index.ts';
import { MAX_STREAM_MESSAGE, StreamDecoder, streamHeader, type DataPayloadSink } from '../../protocol/lan-stream.ts';

export interface SocketChannelOptions {
  /**
   * Stop reading from the peer while our unsent bytes exceed this: a peer that does not read
   * our answers gets no more of its requests read (TCP pushes back on it).
   */
  readPauseBytes?: number;
  /** Unsent bytes past this close the connection (a peer that never reads). */
  maxBufferedBytes?: number;
  /**
   * Unsent bytes of which none reach the network for this long close the connection: a peer
   * that stopped reading would otherwise hold them (up to maxBufferedBytes) for ever, since
   * the serving side waits for them to drain. 0: never.
   */
  stallTimeoutMs?: number;
  /**
   * The socket was made with `reader.onread` (tls.connect): its bytes arrive through the
   * reader, into one reused buffer, instead of as 'data' events.
   */
  reader?: ReusedReadBuffer;
}

/** Bytes read from the socket at most per callback: four TLS records. */
const READ_BUFFER_BYTES = 64 * 1024;

/**
 * Reads of a socket into one buffer, reused for every read (`onread` of `tls.connect`): no
 * fresh Buffer per TLS record for the garbage collector, and no stream 'data' event per
 * record. Why: on the daemon receiving a folder, TLS records arrive 16 KiB at a time, and the
 * per-record Buffer and event cost about as much CPU as the decryption (issue 14). A DATA
 * payload is copied out into its block buffer anyway; other messages are copied out before
 * they are delivered. Bytes that arrive before the channel attaches are kept (copied).
 * `tls.connect` takes `onread` only when it makes the socket itself, so the accepting side
 * (a TLSSocket over a net socket) still reads with 'data' events.
 */
export class ReusedReadBuffer {
  readonly onread = {
    buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
    callback: (bytesRead: number, buffer: Buffer): boolean => this.arrived(buffer.subarray(0, bytesRead)),
  };
  private early: Buffer[] | null = [];
  private target: ((chunk: Uint8Array) => void) | null = null;

  /**
   * From now on each read goes to `target`, which must not keep the chunk past its return.
   * Bytes read before are delivered on the next tick (after the caller has set its handlers,
   * as 'data' events would be), and later reads queue behind them.
   */
  attach(target: (chunk: Uint8Array) => void): void {
    this.target = target;
    if (this.early!.length === 0) {
      this.early = null;
      return;
    }
    process.nextTick(() => {
      const early = this.early!;
      this.early = null;
      for (const chunk of early) target(chunk);
    });
  }

  private arrived(chunk: Buffer): boolean {
    if (this.early) this.early.push(Buffer.from(chunk));
    else this.target!(chunk);
    return true;
  }
}

/**
 * `source` into `target` at `offset` with one C++ memcpy: `Buffer#fill` with a buffer as the
 * value copies it once when the range is exactly its length. Why not `set` or `Buffer#copy`
 * (which is `set` in Node 20): into shared memory (the pooled block buffers) V8 copies with
 * relaxed atomics, byte by byte when source and target are not equally aligned, and TLS
 * records put payloads at any offset: 87 against 12 ms per 256 MiB (issue 14).
 */
export function copyNatively(target: Uint8Array, source: Uint8Array, offset: number): void {
  // Small copies cost less than the call into C++ (about 2 µs) either way.
  if (source.length < NATIVE_COPY_MIN) return target.set(source, offset);
  if (offset < 0 || offset + source.length > target.length) throw new RangeError('copy out of the target view');
  Buffer.prototype.fill.call(target, source, offset, offset + source.length);
}
const NATIVE_COPY_MIN = 1024;

/** version, type, id u32, reason u8 (frames.ts). */
const NACK_FRAME_BYTES = 7;

const DEFAULTS = {
  // Above a LAN link's serving high-water mark (4 MiB plus a frame), so serving alone never pauses.
  readPauseBytes: 8 * 1024 * 1024,
  maxBufferedBytes: 16 * 1024 * 1024,
  // A LAN that moves nothing for half a minute is gone or hostile; the peers dial again.
  stallTimeoutMs: 30_000,
};

/**
 * A FrameChannel over a connected stream socket (the TLS socket of a LAN link): each
 * message travels with a length prefix (lan-stream.ts). `bufferedAmount` is the socket's
 * unsent bytes. `close()` flushes what was sent and ends the connection; `onclose` fires
 * once, on close() or when the socket closes, and nothing is delivered after it.
 *
 * `intercept` sees each message before `onmessage`; returning true consumes it (the LAN
 * session takes its hello messages this way).
 */
export class SocketFrameChannel implements FrameChannel {
  bufferedAmountLowThreshold = 0;
  onopen: (() => void) | null = null;
  onmessage: ((bytes: Uint8Array) => void) | null = null;
  onbufferedamountlow: (() => void) | null = null;
  onclose: (() => void) | null = null;
  intercept: ((bytes: Uint8Array) => boolean) | null = null;
  /** The byte stream broke its framing (declared length 0 or too large); the channel is closed already. */
  onstreamerror: ((error: ValidationError) => void) | null = null;
  /** Our unsent bytes passed maxBufferedBytes; the channel is closed already. */
  onbacklog: (() => void) | null = null;
  /** Our unsent bytes made no progress for stallTimeoutMs; the channel is closed already. */
  onstall: (() => void) | null = null;
  /** We refused one of the peer's requests (a NACK frame went out): for the refusal counters. */
  onnack: ((reason: NackReason) => void) | null = null;

  /**
   * Where DATA frame payloads go as they arrive (the PeerLink's block buffers): set once; until
   * then, and whenever it declines a frame, DATA frames arrive as messages like any other.
   */
  dataSink: DataPayloadSink | null = null;
  /** When bytes last arrived from the peer (directly written DATA frames reach no handler). */
  lastReceivedAt = Date.now();

  private readonly decoder = new StreamDecoder({
    begin: (id, offset, length) => (this.closed || !this.dataSink ? null : this.dataSink.begin(id, offset, length)),
    end: () => this.dataSink?.end(),
    copy: copyNatively,
  });
  private readonly limits: typeof DEFAULTS;
  private closed = false;
  private readPaused = false;
  /** Bytes handed to the socket so far; minus its writableLength, those the network took. */
  private queuedBytes = 0;
  private flushedAtLastCheck = 0;
  private stallTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly socket: Socket,
    options: SocketChannelOptions = {},
  ) {
    this.limits = {
      readPauseBytes: options.readPauseBytes ?? DEFAULTS.readPauseBytes,
      maxBufferedBytes: options.maxBufferedBytes ?? DEFAULTS.maxBufferedBytes,
      stallTimeoutMs: options.stallTimeoutMs ?? DEFAULTS.stallTimeoutMs,
    };
    if (options.reader) options.reader.attach((chunk) => this.receive(chunk, true));
    else socket.on('data', (chunk: Buffer) => this.receive(chunk, false));
    socket.on('drain', () => this.drained());
    socket.on('close', () => this.markClosed());
    socket.on('end', () => this.close());
    // Errors end in 'close'; the listener keeps them from being thrown.
    socket.on('error', () => this.markClosed());
  }

  get isOpen(): boolean {
    return !this.closed && !this.socket.destroyed && this.socket.writable;
  }

  get bufferedAmount(): number {
    return this.closed ? 0 : this.socket.writableLength;
  }

  send(bytes: Uint8Array<ArrayBuffer>): void {
    if (!this.isOpen) throw new Error('InvalidStateError: channel is not open');
    if (bytes.length < 1 || bytes.length > MAX_STREAM_MESSAGE) throw new ValidationError('stream.length', 'message out of range');
    this.socket.cork();
    this.socket.write(streamHeader(bytes.length));
    this.socket.write(bytes);
    this.socket.uncork();
    if (this.onnack && bytes.length === NACK_FRAME_BYTES && bytes[0] === FRAME_VERSION && bytes[1] === FrameType.nack) {
      const reason = NACK_REASONS[bytes[6] - 1];
      if (reason) this.onnack(reason);
    }
    this.sent(4 + bytes.length);
  }

  /** One DATA frame as head and payload: the payload goes to the socket as it is (no copy into a frame). */
  sendData(head: Uint8Array<ArrayBuffer>, payload: Uint8Array, onSent?: () => void): void {
    if (!this.isOpen) throw new Error('InvalidStateError: channel is not open');
    const length = head.length + payload.length;
    this.socket.cork();
    this.socket.write(streamHeader(length));
    this.socket.write(head);
    // The write callback comes once the socket has taken the chunk (TLS: encrypted it), in
    // order; after an error the payload may still be queued, so it is not released then.
    if (onSent) this.socket.write(payload, (error) => (error ? undefined : onSent()));
    else this.socket.write(payload);
    this.socket.uncork();
    this.sent(4 + length);
  }

  private sent(bytes: number): void {
    this.queuedBytes += bytes;
    if (this.socket.writableLength > this.limits.maxBufferedBytes) {
      this.destroy();
      this.onbacklog?.();
      return;
    }
    this.watchProgress();
  }

  /** Flushes what was sent, then ends the connection (destroyed if the peer does not finish). */
  close(): void {
    if (this.closed) return;
    this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), 5000);
    timer.unref();
    this.socket.once('close', () => clearTimeout(timer));
    this.markClosed();
  }

  /** Drops the connection at once, unsent bytes and all. */
  destroy(): void {
    this.socket.destroy();
    this.markClosed();
  }

  /** `reused`: the chunk's buffer is read into again after this returns, so messages are copied out of it. */
  private receive(chunk: Uint8Array, reused: boolean): void {
    if (this.closed) return;
    this.lastReceivedAt = Date.now();
    try {
      this.decoder.feed(chunk, (view) => {
        if (this.closed) return;
        // A copy (not `slice`: on a Buffer that is a view too).
        const message = reused && view.buffer === chunk.buffer ? new Uint8Array(view) : view;
        if (this.intercept?.(message)) return;
        this.onmessage?.(message);
      });
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      this.destroy();
      this.onstreamerror?.(error);
      return;
    }
    if (!this.closed && !this.readPaused && this.socket.writableLength > this.limits.readPauseBytes) {
      this.readPaused = true;
      this.socket.pause();
    }
  }

  private drained(): void {
    if (this.closed) return;
    if (this.readPaused && this.socket.writableLength <= this.limits.readPauseBytes) {
      this.readPaused = false;
      this.socket.resume();
    }
    if (this.socket.writableLength <= this.bufferedAmountLowThreshold) this.onbufferedamountlow?.();
  }

  /** While bytes wait unsent, checks once per stallTimeoutMs that some of them went out. */
  private watchProgress(): void {
    if (this.stallTimer || this.limits.stallTimeoutMs <= 0) return;
    this.flushedAtLastCheck = this.flushedBytes();
    const check = () => {
      this.stallTimer = null;
      if (this.closed || this.socket.writableLength === 0) return;
      const flushed = this.flushedBytes();
      if (flushed === this.flushedAtLastCheck) {
        this.destroy();
        this.onstall?.();
        return;
      }
      this.flushedAtLastCheck = flushed;
      this.stallTimer = setTimeout(check, this.limits.stallTimeoutMs);
      this.stallTimer.unref?.();
    };
    this.stallTimer = setTimeout(check, this.limits.stallTimeoutMs);
    this.stallTimer.unref?.();
  }

  private flushedBytes(): number {
    return this.queuedBytes - this.socket.writableLength;
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.stallTimer = null;
    this.onclose?.();
  }
}
