import type { FrameChannel } from '../../src/engine/frame-channel.ts';

/**
 * One end of an in-memory message channel, standing in for an RTCDataChannel: messages
 * are delivered in order on a later tick, `bufferedAmount` counts bytes sent but not yet
 * delivered, and delivery can be paused to fill the buffer.
 */
export class MemoryChannel implements FrameChannel {
  peer!: MemoryChannel;
  isOpen = true;
  bufferedAmount = 0;
  bufferedAmountLowThreshold = 0;
  /** `send` copies the message, as an RTCDataChannel does (FrameChannel.copiesOnSend). */
  readonly copiesOnSend = true;
  /** Whether `bufferedamountlow` fires (@roamhq/wrtc never fires it). */
  firesLowEvent = true;
  /** It fires as an RTCDataChannel's does, when bufferedAmount falls to the threshold. */
  readonly lowEventAtThreshold = true;
  /** Every message this end sent, in order. */
  readonly sent: Uint8Array[] = [];
  /** Largest bufferedAmount seen. */
  peakBuffered = 0;
  /** Sees every message this end receives, before the handler. */
  tap: ((bytes: Uint8Array) => void) | null = null;
  onopen: (() => void) | null = null;
  onmessage: ((bytes: Uint8Array) => void) | null = null;
  onbufferedamountlow: (() => void) | null = null;
  onclose: (() => void) | null = null;
  private queue: Uint8Array[] = [];
  private paused = false;
  private scheduled = false;
  private closing = false;
  private dead = false;

  static pair(): [MemoryChannel, MemoryChannel] {
    const a = new MemoryChannel();
    const b = new MemoryChannel();
    a.peer = b;
    b.peer = a;
    return [a, b];
  }

  send(bytes: Uint8Array): void {
    if (!this.isOpen) throw new Error('InvalidStateError: channel is not open');
    const copy = bytes.slice();
    this.sent.push(copy);
    this.queue.push(copy);
    this.bufferedAmount += copy.length;
    this.peakBuffered = Math.max(this.peakBuffered, this.bufferedAmount);
    this.schedule();
  }

  /** Stops delivering what this end sends (the network is slow). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.schedule();
  }

  /** Like RTCDataChannel.close(): what was sent already is still delivered, then both ends close. */
  close(): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.closing = true;
    this.paused = false;
    this.scheduled = false;
    setTimeout(() => {
      this.deliver();
      this.finishClose();
      this.peer.finishClose();
    }, 0);
  }

  private finishClose(): void {
    if (this.dead) return;
    this.dead = true;
    this.isOpen = false;
    this.queue = [];
    this.bufferedAmount = 0;
    setTimeout(() => this.onclose?.(), 0);
  }

  private schedule(): void {
    if (this.scheduled || this.paused || this.closing) return;
    this.scheduled = true;
    setTimeout(() => this.deliver(), 0);
  }

  private deliver(): void {
    this.scheduled = false;
    while (!this.paused && this.queue.length > 0 && !this.dead) {
      const bytes = this.queue.shift()!;
      const before = this.bufferedAmount;
      this.bufferedAmount -= bytes.length;
      if (!this.peer.dead) {
        this.peer.tap?.(bytes);
        this.peer.onmessage?.(bytes);
      }
      if (this.firesLowEvent && before > this.bufferedAmountLowThreshold && this.bufferedAmount <= this.bufferedAmountLowThreshold) {
        this.onbufferedamountlow?.();
      }
    }
  }
}
