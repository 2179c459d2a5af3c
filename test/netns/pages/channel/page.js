// Main thread of the data-channel test page: negotiates one RTCPeerConnection with
// simple-peer (signals go out through window.__sendSignal, which the test wires to the
// other page), then opens negotiated data channels and hands each to its own worker.
'use strict';

const state = {
  peer: null,
  connected: null,
  workers: new Map(),
};

function fail(message) {
  throw new Error(message);
}

/** Creates the peer (the initiator starts signalling at once); see waitConnected. */
function startPeer({ initiator }) {
  if (state.peer) fail('peer already started');
  // No ICE servers: host candidates only, what a LAN (and the namespace) has.
  const peer = new SimplePeer({ initiator, trickle: true, config: { iceServers: [] } });
  state.peer = peer;
  peer.on('signal', (data) => void window.__sendSignal(JSON.stringify(data)));
  state.connected = new Promise((resolve, reject) => {
    peer.once('connect', resolve);
    peer.once('error', reject);
  });
  state.connected.catch(() => undefined);
  return true;
}

/** Resolves with the selected candidate pair once simple-peer reports 'connect'. */
async function waitConnected() {
  await (state.connected ?? fail('peer not started'));
  return describeConnection();
}

function signal(json) {
  state.peer.signal(JSON.parse(json));
}

async function describeConnection() {
  // Right after 'connect' Chromium's stats may not yet name the selected pair (seen on a
  // loaded 2-core machine), so ask again for a short while before reporting none.
  for (let attempt = 0; ; attempt++) {
    const found = await selectedPair();
    if (found.pair || attempt >= 20) return describePair(found);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function selectedPair() {
  const stats = await state.peer._pc.getStats();
  const byId = new Map();
  stats.forEach((s) => byId.set(s.id, s));
  let pair = null;
  stats.forEach((s) => {
    // The transport names the pair in use; a succeeded (nominated) pair is the fallback.
    if (s.type === 'transport' && s.selectedCandidatePairId && byId.has(s.selectedCandidatePairId)) {
      pair = byId.get(s.selectedCandidatePairId);
    }
  });
  if (!pair) {
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.state === 'succeeded' && (s.nominated || !pair)) pair = s;
    });
  }
  return { pair, byId };
}

function describePair({ pair, byId }) {
  const local = pair && byId.get(pair.localCandidateId);
  const remote = pair && byId.get(pair.remoteCandidateId);
  return {
    local: local ? `${local.candidateType} ${local.address ?? local.ip}:${local.port} ${local.protocol}` : null,
    remote: remote ? `${remote.candidateType} ${remote.address ?? remote.ip}:${remote.port} ${remote.protocol}` : null,
    maxMessageSize: state.peer._pc.sctp ? state.peer._pc.sctp.maxMessageSize : null,
    // simple-peer's own in-band (DCEP) channel takes a stream id too.
    simplePeerChannelId: state.peer._channel ? state.peer._channel.id : null,
  };
}

/**
 * Creates the negotiated channel `id` on the underlying RTCPeerConnection and gives it to a
 * new dedicated worker: transferred (`worker.postMessage(dc, [dc])`) while still
 * 'connecting', or, with mode 'relay' or where the transfer throws, kept here and relayed
 * through a MessagePort. Resolves once the worker sees the channel open.
 */
async function openWorkerChannel(id, { mode = 'transfer' } = {}) {
  const pc = state.peer._pc;
  const dc = pc.createDataChannel(`blocks-${id}`, { negotiated: true, id });
  dc.binaryType = 'arraybuffer';
  const worker = new Worker('/channel-worker.js');
  const readyStateAtTransfer = dc.readyState;
  let transferred = false;
  let transferError = null;
  if (mode === 'transfer') {
    try {
      worker.postMessage(dc, [dc]);
      transferred = true;
    } catch (error) {
      transferError = String(error);
    }
  }
  if (!transferred) relayThroughPort(dc, worker);
  const entry = { worker, pending: new Map(), nextCall: 1 };
  worker.onmessage = (event) => {
    const { call, result, error } = event.data;
    const waiter = entry.pending.get(call);
    if (!waiter) return;
    entry.pending.delete(call);
    if (error) waiter.reject(new Error(error));
    else waiter.resolve(result);
  };
  worker.onerror = (event) => {
    for (const waiter of entry.pending.values()) waiter.reject(new Error(`worker error: ${event.message}`));
    entry.pending.clear();
  };
  state.workers.set(id, entry);
  await callWorker(id, { op: 'opened' });
  return {
    transferred,
    transferError,
    readyStateAtTransfer,
    workerHasRTCDataChannel: await callWorker(id, { op: 'hasRTCDataChannel' }),
  };
}

/** Whether a negotiated channel with this id can be created now ('ok', or the error); closes it again. */
function tryNegotiatedId(id) {
  try {
    state.peer._pc.createDataChannel(`probe-${id}`, { negotiated: true, id }).close();
    return 'ok';
  } catch (error) {
    return String(error);
  }
}

function callWorker(id, message) {
  const entry = state.workers.get(id) ?? fail(`no worker for channel ${id}`);
  const call = entry.nextCall++;
  return new Promise((resolve, reject) => {
    entry.pending.set(call, { resolve, reject });
    entry.worker.postMessage({ ...message, call });
  });
}

/**
 * The fallback where a channel cannot be transferred: the main thread keeps the channel and
 * moves buffers to and from the worker over a MessagePort (transferring the ArrayBuffers),
 * reporting bufferedAmount so the worker can apply backpressure.
 */
function relayThroughPort(dc, worker) {
  const { port1, port2 } = new MessageChannel();
  worker.postMessage({ op: 'relayPort', port: port2 }, [port2]);
  const status = () => ({ t: 'status', readyState: dc.readyState, bufferedAmount: dc.bufferedAmount });
  dc.onopen = () => port1.postMessage(status());
  dc.onclose = () => port1.postMessage(status());
  dc.onbufferedamountlow = () => port1.postMessage(status());
  dc.onmessage = (event) => port1.postMessage({ t: 'data', data: event.data }, [event.data]);
  port1.onmessage = (event) => {
    const m = event.data;
    if (m.t === 'send') {
      dc.send(m.data);
      port1.postMessage({ ...status(), t: 'sent', bytes: m.data.byteLength });
    } else if (m.t === 'threshold') {
      dc.bufferedAmountLowThreshold = m.value;
    } else if (m.t === 'status') {
      port1.postMessage(status());
    } else if (m.t === 'close') {
      dc.close();
    }
  };
  if (dc.readyState === 'open') port1.postMessage(status());
}

function channelProgress(id) {
  return callWorker(id, { op: 'progress' });
}

function sendOnChannel(id, options) {
  return callWorker(id, { op: 'send', ...options });
}

function receiveOnChannel(id, options) {
  return callWorker(id, { op: 'receive', ...options });
}

async function closeChannel(id) {
  const entry = state.workers.get(id);
  if (!entry) return;
  await callWorker(id, { op: 'close' }).catch(() => undefined);
  entry.worker.terminate();
  state.workers.delete(id);
}

window.channelTest = {
  startPeer,
  waitConnected,
  signal,
  describeConnection,
  tryNegotiatedId,
  openWorkerChannel,
  sendOnChannel,
  receiveOnChannel,
  channelProgress,
  closeChannel,
};
window.channelTestReady = true;
