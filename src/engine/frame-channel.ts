import type { DataPayloadSink } from '../protocol/lan-stream.ts';

/**
 * A message-oriented duplex carrying block frames: what an RTCDataChannel gives (in the
 * worker after transfer, or in Node through @roamhq/wrtc), or a MessagePort relay. The
 * engine depends only on this shape, never on a DOM type.
 */
export interface FrameChannel {
  /** True once messages can be sent, false before and after. */
  readonly isOpen: boolean;
  send(bytes: Uint8Array<ArrayBuffer>): void;
  /**
   * True when `send` is done with the bytes once it returns (an RTCDataChannel copies them;
   * a MessagePort relay sends a copy): the sender may then build every frame in one reused
   * buffer and reuse a block's buffer as soon as its last frame is sent.
   */
  readonly copiesOnSend?: boolean;
  /** Bytes queued by `send` and not yet handed to the network. */
  readonly bufferedAmount: number;
  bufferedAmountLowThreshold: number;
  onopen: (() => void) | null;
  /** One whole message. A message that was not binary arrives as an empty array. */
  onmessage: ((bytes: Uint8Array) => void) | null;
  /** May never fire (@roamhq/wrtc does not): callers also poll `bufferedAmount`. */
  onbufferedamountlow: (() => void) | null;
  /**
   * True where onbufferedamountlow, once it has fired at all, fires whenever bufferedAmount
   * falls to bufferedAmountLowThreshold (a browser's RTCDataChannel): a sender may then wait on
   * it and poll only as a guard. A LAN socket's fires only once its buffer is empty.
   */
  readonly lowEventAtThreshold?: boolean;
  /** Fires once, after which nothing is delivered. */
  onclose: (() => void) | null;
  close(): void;
  /**
   * Present on channels over a byte stream (LAN links): the receiver's PeerLink sets it, and the
   * payload of each DATA frame it accepts is written straight into that block's buffer instead
   * of arriving through `onmessage` (one copy of every byte fewer).
   */
  dataSink?: DataPayloadSink | null;
  /**
   * Present on channels over a byte stream: sends one DATA frame given as its head
   * (`encodeDataHead`) and payload, without joining them first. The payload is read later,
   * when the stream takes it: it must not change until then. `onSent`, if given, is called
   * once the stream no longer needs the payload (nor any payload sent before it), or not at
   * all if the channel closes first.
   */
  sendData?(head: Uint8Array<ArrayBuffer>, payload: Uint8Array, onSent?: () => void): void;
}

/** The part of RTCDataChannel that `frameChannelOf` uses (structural, so no DOM import). */
export interface DataChannelLike {
  binaryType: string;
  readonly readyState: string;
  readonly bufferedAmount: number;
  bufferedAmountLowThreshold: number;
  send(data: Uint8Array<ArrayBuffer>): void;
  close(): void;
  addEventListener(type: string, listener: (event: { data?: unknown }) => void): void;
}

/** Wraps a data channel (open or still connecting) as a FrameChannel. */
export function frameChannelOf(dc: DataChannelLike): FrameChannel {
  dc.binaryType = 'arraybuffer';
  let closed = dc.readyState === 'closing' || dc.readyState === 'closed';
  const channel: FrameChannel = {
    get isOpen() {
      return !closed && dc.readyState === 'open';
    },
    send: (bytes) => dc.send(bytes),
    // Chromium's RTCDataChannel and @roamhq/wrtc copy the message before send returns.
    copiesOnSend: true,
    // As the WebRTC spec has it; @roamhq/wrtc never fires the event at all, so its link polls.
    lowEventAtThreshold: true,
    get bufferedAmount() {
      return dc.bufferedAmount;
    },
    get bufferedAmountLowThreshold() {
      return dc.bufferedAmountLowThreshold ?? 0;
    },
    set bufferedAmountLowThreshold(value: number) {
      dc.bufferedAmountLowThreshold = value;
    },
    onopen: null,
    onmessage: null,
    onbufferedamountlow: null,
    onclose: null,
    close: () => {
      dc.close();
      markClosed();
    },
  };
  const markClosed = () => {
    if (closed) return;
    closed = true;
    channel.onclose?.();
  };
  dc.addEventListener('open', () => channel.onopen?.());
  dc.addEventListener('message', (event) => {
    if (closed) return;
    const data = event.data;
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else bytes = new Uint8Array(0);
    channel.onmessage?.(bytes);
  });
  dc.addEventListener('bufferedamountlow', () => channel.onbufferedamountlow?.());
  dc.addEventListener('close', markClosed);
  dc.addEventListener('error', () => {
    if (closed) return;
    try {
      dc.close();
    } finally {
      markClosed();
    }
  });
  return channel;
}
