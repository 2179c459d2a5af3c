/**
 * Hands a block channel to the sync worker. Chromium transfers a connecting RTCDataChannel
 * (`postMessage(dc, [dc])`), so bytes never touch this thread. Where a browser cannot, the
 * page relays the channel through a MessagePort instead: slower, but it works.
 *
 * Port relay messages: ArrayBuffers are frames; strings are control words ("open", "close").
 */

/** Send-side queue limit of the relay before it waits for the channel to drain. */
const RELAY_HIGH_WATER = 4 * 1024 * 1024;

export function isTransferUnsupported(error: unknown): boolean {
  return error instanceof DOMException && error.name === 'DataCloneError';
}

/** Relays `dc` through a MessageChannel; returns the port for the worker. */
export function relayThroughPort(dc: RTCDataChannel): MessagePort {
  const { port1, port2 } = new MessageChannel();
  const waiting: ArrayBuffer[] = [];
  dc.binaryType = 'arraybuffer';
  dc.bufferedAmountLowThreshold = RELAY_HIGH_WATER / 2;
  const flush = () => {
    while (waiting.length > 0 && dc.readyState === 'open' && dc.bufferedAmount < RELAY_HIGH_WATER) dc.send(waiting.shift()!);
  };
  dc.addEventListener('open', () => {
    port1.postMessage('open');
    flush();
  });
  dc.addEventListener('bufferedamountlow', flush);
  dc.addEventListener('message', (event: MessageEvent) => {
    if (event.data instanceof ArrayBuffer) port1.postMessage(event.data, [event.data]);
  });
  dc.addEventListener('close', () => {
    port1.postMessage('close');
    port1.close();
  });
  port1.onmessage = (event: MessageEvent) => {
    if (event.data === 'close') dc.close();
    else if (event.data instanceof ArrayBuffer) {
      waiting.push(event.data);
      flush();
    }
  };
  if (dc.readyState === 'open') port1.postMessage('open');
  return port2;
}
