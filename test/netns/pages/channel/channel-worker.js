// Dedicated worker of the data-channel test page: owns one data channel (transferred, or a
// MessagePort relay to the main thread's channel) and sends or receives a byte stream on it
// with bufferedAmount backpressure, hashing it with WebCrypto SHA-256.
'use strict';

let endpoint = null;
let endpointReady = null;
const endpointWaiters = [];

function setEndpoint(ep) {
  endpoint = ep;
  for (const resolve of endpointWaiters.splice(0)) resolve(ep);
}

function getEndpoint() {
  return endpoint ? Promise.resolve(endpoint) : new Promise((resolve) => endpointWaiters.push(resolve));
}

/** One interface over a transferred RTCDataChannel and over the relay. */
function channelEndpoint(dc) {
  dc.binaryType = 'arraybuffer';
  let onData = null;
  dc.onmessage = (event) => onData && onData(event.data);
  return {
    kind: 'transferred',
    opened: new Promise((resolve, reject) => {
      if (dc.readyState === 'open') resolve();
      dc.onopen = () => resolve();
      dc.onclose = () => reject(new Error('channel closed before opening'));
    }),
    send: (view) => dc.send(view),
    bufferedAmount: () => dc.bufferedAmount,
    setLowThreshold: (value) => (dc.bufferedAmountLowThreshold = value),
    waitLow: (limit) =>
      new Promise((resolve, reject) => {
        if (dc.readyState !== 'open') return reject(new Error(`channel ${dc.readyState}`));
        if (dc.bufferedAmount <= limit) return resolve();
        // bufferedamountlow normally fires; poll as well so a missed event cannot stall us.
        const poll = setInterval(check, 50);
        dc.onbufferedamountlow = check;
        function check() {
          if (dc.readyState !== 'open') {
            clearInterval(poll);
            reject(new Error(`channel ${dc.readyState}`));
          } else if (dc.bufferedAmount <= limit) {
            clearInterval(poll);
            dc.onbufferedamountlow = null;
            resolve();
          }
        }
      }),
    onData: (callback) => (onData = callback),
    close: () => dc.close(),
  };
}

function relayEndpoint(port) {
  let readyState = 'connecting';
  let mainBuffered = 0;
  let inFlight = 0;
  let onData = null;
  let openResolve;
  const opened = new Promise((resolve) => (openResolve = resolve));
  const lowWaiters = [];
  port.onmessage = (event) => {
    const m = event.data;
    if (m.t === 'data') {
      onData && onData(m.data);
      return;
    }
    if (m.t === 'sent') inFlight -= m.bytes;
    readyState = m.readyState;
    mainBuffered = m.bufferedAmount;
    if (readyState === 'open') openResolve();
    for (const waiter of lowWaiters.splice(0)) waiter();
  };
  const buffered = () => inFlight + mainBuffered;
  return {
    kind: 'relay',
    opened,
    send: (view) => {
      const copy = view.slice().buffer;
      inFlight += copy.byteLength;
      port.postMessage({ t: 'send', data: copy }, [copy]);
    },
    bufferedAmount: buffered,
    setLowThreshold: (value) => port.postMessage({ t: 'threshold', value }),
    waitLow: async (limit) => {
      while (buffered() > limit) {
        if (readyState !== 'open') throw new Error(`channel ${readyState}`);
        // Status arrives after each send and on bufferedamountlow; below the threshold
        // nothing fires, so ask again now and then.
        const poll = setTimeout(() => port.postMessage({ t: 'status' }), 50);
        await new Promise((resolve) => lowWaiters.push(resolve));
        clearTimeout(poll);
      }
    },
    onData: (callback) => (onData = callback),
    close: () => port.postMessage({ t: 'close' }),
  };
}

/** Progress of the current send/receive, for diagnosis when something stalls. */
const progress = { sentMessages: 0, sentBytes: 0, receivedMessages: 0, receivedBytes: 0, waitingLow: false };

const now = () => performance.timeOrigin + performance.now();

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

function randomBytes(size) {
  const bytes = new Uint8Array(size);
  for (let offset = 0; offset < size; offset += 65536) crypto.getRandomValues(bytes.subarray(offset, offset + 65536));
  return bytes;
}

async function send({ totalBytes, messageBytes, highWater = 4 * 1024 * 1024, lowWater = 1024 * 1024, hash = true }) {
  const ep = await getEndpoint();
  await ep.opened;
  const data = randomBytes(totalBytes);
  const sha256 = hash ? hex(await crypto.subtle.digest('SHA-256', data)) : null;
  ep.setLowThreshold(lowWater);
  const startedAt = now();
  let messages = 0;
  for (let offset = 0; offset < totalBytes; offset += messageBytes) {
    if (ep.bufferedAmount() > highWater) {
      progress.waitingLow = true;
      await ep.waitLow(lowWater);
      progress.waitingLow = false;
    }
    const chunk = data.subarray(offset, Math.min(offset + messageBytes, totalBytes));
    ep.send(chunk);
    messages++;
    progress.sentMessages++;
    progress.sentBytes += chunk.byteLength;
  }
  const queuedAt = now();
  await ep.waitLow(0);
  return { bytes: totalBytes, messages, sha256, startedAt, queuedAt, drainedAt: now() };
}

async function receive({ totalBytes, hash = true }) {
  const ep = await getEndpoint();
  await ep.opened;
  const data = new Uint8Array(totalBytes);
  let received = 0;
  let messages = 0;
  let firstAt = 0;
  let lastAt = 0;
  let maxMessage = 0;
  await new Promise((resolve, reject) => {
    ep.onData((buffer) => {
      if (messages === 0) firstAt = now();
      messages++;
      if (received + buffer.byteLength > totalBytes) {
        reject(new Error(`received more than ${totalBytes} bytes`));
        return;
      }
      data.set(new Uint8Array(buffer), received);
      received += buffer.byteLength;
      progress.receivedMessages++;
      progress.receivedBytes += buffer.byteLength;
      maxMessage = Math.max(maxMessage, buffer.byteLength);
      if (received === totalBytes) {
        lastAt = now();
        resolve();
      }
    });
  });
  const sha256 = hash ? hex(await crypto.subtle.digest('SHA-256', data)) : null;
  return { bytes: received, messages, maxMessage, sha256, firstAt, lastAt };
}

async function handle(message) {
  switch (message.op) {
    case 'opened': {
      const ep = await getEndpoint();
      await ep.opened;
      return ep.kind;
    }
    case 'progress':
      return { ...progress, bufferedAmount: endpoint ? endpoint.bufferedAmount() : null };
    case 'hasRTCDataChannel':
      return typeof RTCDataChannel === 'function';
    case 'send':
      return send(message);
    case 'receive':
      return receive(message);
    case 'close':
      if (endpoint) endpoint.close();
      return true;
    default:
      throw new Error(`unknown op ${message.op}`);
  }
}

self.onmessage = (event) => {
  const message = event.data;
  if (typeof RTCDataChannel === 'function' && message instanceof RTCDataChannel) {
    setEndpoint(channelEndpoint(message));
    return;
  }
  if (message && message.op === 'relayPort') {
    setEndpoint(relayEndpoint(message.port));
    return;
  }
  handle(message).then(
    (result) => self.postMessage({ call: message.call, result }),
    (error) => self.postMessage({ call: message.call, error: String(error && error.stack ? error.stack : error) }),
  );
};
