import type { FrameChannel } from '../src/engine/frame-channel.ts';

/**
 * The worker's end of a block channel that the page relays through a MessagePort
 * (src/app/peers/channel-handoff.ts): ArrayBuffers are frames, "open"/"close" are control
 * words. The page queues against the real channel's buffer, so this end reports none.
 */
export function frameChannelOfPort(port: MessagePort): FrameChannel {
  let open = false;
  let closed = false;
  const channel: FrameChannel = {
    get isOpen() {
      return open && !closed;
    },
    send: (bytes) => {
      const copy = bytes.slice().buffer;
      port.postMessage(copy, [copy]);
    },
    copiesOnSend: true,
    bufferedAmount: 0,
    bufferedAmountLowThreshold: 0,
    onopen: null,
    onmessage: null,
    onbufferedamountlow: null,
    onclose: null,
    close: () => {
      if (closed) return;
      port.postMessage('close');
      finish();
    },
  };
  const finish = () => {
    if (closed) return;
    closed = true;
    port.close();
    channel.onclose?.();
  };
  port.onmessage = (event: MessageEvent) => {
    if (event.data === 'open' && !open) {
      open = true;
      channel.onopen?.();
    } else if (event.data === 'close') finish();
    else if (event.data instanceof ArrayBuffer && open && !closed) channel.onmessage?.(new Uint8Array(event.data));
  };
  return channel;
}
