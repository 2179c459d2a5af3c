/**
 * A peer that lies, for end-to-end tests: it joins a workspace's relay room like a browser,
 * advertises the workspace's head cursor (claiming every block), accepts WebRTC connections
 * the way the page does (src/app/peers/peer-connections.ts), and serves every requested
 * block with one byte flipped: right length, wrong hash.
 *
 * Run inside the test's network namespace (so its ICE candidates carry the namespace's
 * address), with the server reachable at NEARSYNC_ORIGIN:
 *
 *   NEARSYNC_ORIGIN=http://localhost:P NEARSYNC_TOKEN=<member token> NEARSYNC_NS=<namespace id> \
 *     node --import tsx test/e2e/support/lying-peer.ts
 *
 * Optional: NEARSYNC_LABEL (default "Lying peer"); NEARSYNC_CLAIM_FETCHING=1 also sends a
 * FETCHING frame for every block when a link opens ("I am fetching these from the server",
 * and it never follows up with HAVE). NEARSYNC_FLIP_AT=<offset> flips the byte at that offset
 * of each block (default: the middle one). NEARSYNC_STALL_AFTER=<bytes> sends the true bytes,
 * but none at or past that offset and no END: the answer never completes.
 *
 * stdout: one JSON object per line —
 *   {"event":"ready","peerId","cursor","blocks"}   joined, advertised, lies prepared
 *   {"event":"connecting","peerId","initiator"}    a connection to a peer is being set up
 *   {"event":"open","peerId"}                       its block channel opened
 *   {"event":"request","peerId","hash","count"}     a REQUEST frame arrived (count: all so far)
 *   {"event":"lie","hash","count"}                  corrupted bytes handed to the link to send
 *   {"event":"closed","peerId","reason"}
 * It exits when stdin closes (so it never outlives the test process) or on SIGTERM/SIGINT.
 */
import wrtc from '@roamhq/wrtc';
import SimplePeer from 'simple-peer';
import { io } from 'socket.io-client';
import { BlockServer } from '../../../src/engine/block-server.ts';
import { frameChannelOf, type DataChannelLike, type FrameChannel } from '../../../src/engine/frame-channel.ts';
import { PeerLink } from '../../../src/engine/peer-link.ts';
import { ServerApi } from '../../../src/engine/server-api.ts';
import type { LocalBlockStore } from '../../../src/engine/types.ts';
import {
  ADVERT_INTERVAL_MS,
  RELAY_PATH,
  RelayEvent,
  ValidationError,
  decodeFrame,
  parseNamespaceId,
  parsePeerLeft,
  parseRelayError,
  parseSignalOut,
  parseWelcome,
  type BlockHash,
  type NamespaceId,
  type SignalData,
} from '../../../src/protocol/index.ts';

/** The page's negotiated block channel (BLOCK_CHANNEL_ID / _LABEL in src/app/peers/peer-connections.ts). */
const BLOCK_CHANNEL_ID = 1000;
const BLOCK_CHANNEL_LABEL = 'nearsync-blocks';

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const origin = env('NEARSYNC_ORIGIN');
const token = env('NEARSYNC_TOKEN');
const ns = parseNamespaceId(env('NEARSYNC_NS'));
const label = process.env.NEARSYNC_LABEL || 'Lying peer';
const claimFetching = process.env.NEARSYNC_CLAIM_FETCHING === '1';
const flipAt = process.env.NEARSYNC_FLIP_AT ? Number(process.env.NEARSYNC_FLIP_AT) : null;
const stallAfter = process.env.NEARSYNC_STALL_AFTER ? Number(process.env.NEARSYNC_STALL_AFTER) : null;

function emit(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

/** Serves a corrupted copy of every block of the workspace. */
class CorruptingStore implements LocalBlockStore {
  readonly lies = new Map<BlockHash, Uint8Array>();
  served = 0;
  async hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    return new Set(hashes.filter((hash) => this.lies.has(hash)));
  }
  async putBlock(): Promise<void> {
    // Nothing is ever fetched here.
  }
  async getBlock(hash: BlockHash): Promise<Uint8Array | null> {
    const bytes = this.lies.get(hash) ?? null;
    if (bytes) emit('lie', { hash, count: ++this.served });
    return bytes;
  }
}

/** With NEARSYNC_STALL_AFTER: holds back every DATA frame at or past that offset, and every END. */
function stalled(bytes: Uint8Array): boolean {
  if (stallAfter === null) return false;
  const frame = decodeFrame(bytes);
  return frame.type === 'end' || (frame.type === 'data' && frame.offset + frame.bytes.length > stallAfter);
}

/** Passes frames through unchanged, counting the peer's REQUEST frames on the way in. */
function countingRequests(inner: FrameChannel, onRequest: (hash: BlockHash) => void): FrameChannel {
  const outer: FrameChannel = {
    get isOpen() {
      return inner.isOpen;
    },
    send: (bytes) => {
      if (!stalled(bytes)) inner.send(bytes);
    },
    get bufferedAmount() {
      return inner.bufferedAmount;
    },
    get bufferedAmountLowThreshold() {
      return inner.bufferedAmountLowThreshold;
    },
    set bufferedAmountLowThreshold(value: number) {
      inner.bufferedAmountLowThreshold = value;
    },
    onopen: null,
    onmessage: null,
    onbufferedamountlow: null,
    onclose: null,
    close: () => inner.close(),
  };
  inner.onopen = () => outer.onopen?.();
  inner.onbufferedamountlow = () => outer.onbufferedamountlow?.();
  inner.onclose = () => outer.onclose?.();
  inner.onmessage = (bytes) => {
    try {
      const frame = decodeFrame(bytes);
      if (frame.type === 'request') onRequest(frame.hash);
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      // The link decodes it again and reports it.
    }
    outer.onmessage?.(bytes);
  };
  return outer;
}

/** Reads the whole journal: the head cursor and the blocks of the live files. */
async function readWorkspace(api: ServerApi): Promise<{ cursor: number; blocks: BlockHash[] }> {
  const live = new Map<string, BlockHash[]>();
  let cursor = 0;
  for (;;) {
    const page = await api.readJournal(ns, cursor, { limit: 1000 });
    for (const entry of page.entries) {
      if (entry.deleted) live.delete(entry.path);
      else live.set(entry.path, entry.blocks);
    }
    cursor = page.cursor;
    if (!page.more) break;
  }
  return { cursor, blocks: [...new Set([...live.values()].flat())] };
}

/** Releases what main() set up; replaced once there is something to release. */
let onShutdown = () => {};
let shuttingDown = false;
function shutdown(): void {
  if (shuttingDown) return;
  shuttingDown = true;
  onShutdown();
  // @roamhq/wrtc keeps native threads alive: leave without waiting for them.
  setTimeout(() => process.exit(0), 100);
}
// From the start, so that a test process that dies during setup takes this one with it.
process.stdin.on('close', shutdown);
process.stdin.on('end', shutdown);
process.stdin.resume();
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);

async function main(): Promise<void> {
  const api = new ServerApi(origin, token);
  const { cursor, blocks } = await readWorkspace(api);
  const store = new CorruptingStore();
  // The real bytes, one byte flipped: the same length as the block, so only the hash tells.
  for (const hash of blocks) {
    const bytes = (await api.getBlock(ns, hash)).slice();
    if (stallAfter === null) bytes[Math.min(bytes.length - 1, flipAt ?? bytes.length >> 1)] ^= 0xff;
    store.lies.set(hash, bytes);
  }
  const server = new BlockServer(store, async (requested, hash) => requested === ns && store.lies.has(hash));

  let selfId: string | null = null;
  let requests = 0;
  const connections = new Map<string, { peer: SimplePeer.Instance; link: PeerLink }>();

  const socket = io(origin, { path: RELAY_PATH, auth: { tokens: [token], label }, transports: ['websocket'] });
  const signal = (to: string, data: unknown) => socket.emit(RelayEvent.signal, { to, data });

  const close = (peerId: string, reason: string) => {
    const connection = connections.get(peerId);
    if (!connection) return;
    connections.delete(peerId);
    connection.link.close();
    connection.peer.destroy();
    emit('closed', { peerId, reason });
  };

  const open = (peerId: string, initiator: boolean, namespaces: NamespaceId[]) => {
    emit('connecting', { peerId, initiator });
    const peer = new SimplePeer({ initiator, trickle: true, wrtc, config: { iceServers: [] } });
    peer.on('signal', (data) => signal(peerId, data));
    peer.on('close', () => close(peerId, 'peer closed the connection'));
    peer.on('error', (error: Error) => close(peerId, error.message));
    // As the page does: a negotiated channel on simple-peer's RTCPeerConnection.
    const pc = (peer as unknown as { _pc: RTCPeerConnection })._pc;
    const dc = pc.createDataChannel(BLOCK_CHANNEL_LABEL, { negotiated: true, id: BLOCK_CHANNEL_ID, ordered: true });
    const channel = countingRequests(frameChannelOf(dc as unknown as DataChannelLike), (hash) => {
      emit('request', { peerId, hash, count: ++requests });
    });
    const link = new PeerLink({
      channel,
      sharedNamespaces: namespaces,
      server,
      onOpen: () => {
        emit('open', { peerId });
        if (claimFetching) link.sendFetching(ns, blocks);
      },
      onClose: () => close(peerId, 'block channel closed'),
    });
    const connection = { peer, link };
    connections.set(peerId, connection);
    return connection;
  };

  socket.on(RelayEvent.welcome, (payload: unknown) => {
    const welcome = parseWelcome(payload);
    for (const peerId of [...connections.keys()]) close(peerId, 'relay reconnected');
    selfId = welcome.peerId;
    socket.emit(RelayEvent.advert, { ns, cursor });
    emit('ready', { peerId: selfId, cursor, blocks: blocks.length });
  });
  socket.on(RelayEvent.signal, (payload: unknown) => {
    const { from, namespaces, data } = parseSignalOut(payload);
    if (!selfId || !namespaces.includes(ns)) return;
    const offersTo = selfId < from;
    const existing = connections.get(from);
    if (data.type === 'connect') {
      // The other side asks us to offer, which the fixed rule lets us do only with the smaller id.
      if (offersTo && !existing) open(from, true, namespaces);
      return;
    }
    if (existing) existing.link.setSharedNamespaces(namespaces);
    const connection = existing ?? (data.type === 'offer' && !offersTo ? open(from, false, namespaces) : null);
    if (!connection) return;
    try {
      connection.peer.signal(data as SignalData as SimplePeer.SignalData);
    } catch (error) {
      close(from, `bad signal: ${error instanceof Error ? error.message : String(error)}`);
    }
  });
  socket.on(RelayEvent.peerLeft, (payload: unknown) => {
    const left = parsePeerLeft(payload);
    if (left.ns === ns) close(left.peerId, 'left the workspace');
  });
  socket.on(RelayEvent.error, (payload: unknown) => {
    const error = parseRelayError(payload);
    process.stderr.write(`relay-error ${error.code}: ${error.message}\n`);
  });
  socket.on('connect_error', (error) => process.stderr.write(`relay connect_error: ${error.message}\n`));
  const advertTimer = setInterval(() => socket.emit(RelayEvent.advert, { ns, cursor }), ADVERT_INTERVAL_MS);

  onShutdown = () => {
    clearInterval(advertTimer);
    for (const peerId of [...connections.keys()]) close(peerId, 'shutting down');
    socket.close();
  };
}

main().catch((error: unknown) => {
  process.stderr.write(`lying peer failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
