import { io, type Socket } from 'socket.io-client';
import {
  BRIDGE_BATCH_QUERY,
  RelayEvent,
  parseAdvertOut,
  parseBridgeFetchReply,
  parseBridgePieceOut,
  parseBridgeStreamReply,
  parsePeersOut,
  type BlockHash,
  type NamespaceId,
} from '../../src/protocol/index.ts';
import { median } from './report.ts';

/**
 * The bridge's own figures, in the bench process: socket.io clients (a member token, as a
 * page) fetch every block of the workspace from the LAN peer behind the bridge, first
 * store-and-forward (the whole block in the bridge-fetch ack), then streamed one piece per
 * bridge-piece event (a client that did not ask for batches, as an older page), then streamed
 * in batches (a client that asked with BRIDGE_BATCH_QUERY, as the page does), each event
 * acknowledged at once, then the verdict; and again in that order, so all modes see the same
 * machine. Two figures per mode:
 * - mbps: all blocks with `depth` fetches in flight (a BridgedBlockSource keeps 4);
 * - first-byte ms: one block at a time, from the emit to the first byte of the block in hand
 *   (store-and-forward: the whole block; streamed: the first piece), median over the blocks.
 */
export interface BridgeProbeResult {
  storeForwardMbps: number;
  streamedMbps: number;
  batchedMbps: number;
  storeForwardFirstByteMs: number;
  streamedFirstByteMs: number;
  batchedFirstByteMs: number;
  /** bridge-piece events per block in the batched throughput runs (single pieces: one per 64 KiB). */
  batchedEventsPerBlock: number;
  blocks: number;
}

type Mode = 'store-forward' | 'streamed' | 'batched';
const MODES = ['store-forward', 'streamed', 'batched'] as const;

export async function probeBridge(url: string, token: string, ns: NamespaceId, hashes: readonly BlockHash[], depth = 4): Promise<BridgeProbeResult> {
  const single = await BridgeClient.connect(url, token, ns, false);
  // The joiners have left: without a browser advert the bridge stops advertising the namespace
  // on the LAN, and the daemon drops its links once that advert expires (about 90 s), in the
  // middle of a probe that runs longer than that under load. The probe keeps one up.
  single.keepAdvertising();
  const batching = await BridgeClient.connect(url, token, ns, true).catch((error: unknown) => {
    single.close();
    throw error;
  });
  try {
    const peerId = await single.lanPeer(30_000);
    const rates: Record<Mode, number[]> = { 'store-forward': [], streamed: [], batched: [] };
    const firstBytes: Record<Mode, number[]> = { 'store-forward': [], streamed: [], batched: [] };
    const latencyBlocks = hashes.slice(0, Math.min(hashes.length, 16));
    let batchedBlocks = 0;
    let batchedEvents = 0;
    for (let round = 0; round < 2; round++) {
      for (const mode of MODES) {
        const client = mode === 'batched' ? batching : single;
        const eventsBefore = batching.events;
        const started = performance.now();
        let bytes = 0;
        let next = 0;
        await Promise.all(
          Array.from({ length: depth }, async () => {
            while (next < hashes.length) bytes += (await client.fetch(mode, peerId, hashes[next++])).size;
          }),
        );
        rates[mode].push(bytes / 1e6 / ((performance.now() - started) / 1000));
        if (mode === 'batched') {
          batchedBlocks += hashes.length;
          batchedEvents += batching.events - eventsBefore;
        }
        for (const hash of latencyBlocks) firstBytes[mode].push((await client.fetch(mode, peerId, hash)).firstByteMs);
      }
    }
    return {
      storeForwardMbps: median(rates['store-forward']),
      streamedMbps: median(rates.streamed),
      batchedMbps: median(rates.batched),
      storeForwardFirstByteMs: median(firstBytes['store-forward']),
      streamedFirstByteMs: median(firstBytes.streamed),
      batchedFirstByteMs: median(firstBytes.batched),
      batchedEventsPerBlock: batchedEvents / Math.max(1, batchedBlocks),
      blocks: hashes.length,
    };
  } finally {
    single.close();
    batching.close();
  }
}

class BridgeClient {
  private nextStream = 1;
  private readonly streams = new Map<number, (offset: number, length: number) => void>();
  /** bridge-piece events received. */
  events = 0;

  private constructor(
    private readonly socket: Socket,
    private readonly ns: NamespaceId,
  ) {
    socket.on(RelayEvent.bridgePiece, (payload: unknown, ack: (reply: unknown) => void) => {
      const piece = parseBridgePieceOut(payload);
      this.events += 1;
      const take = this.streams.get(piece.stream);
      take?.(piece.offset, piece.data.byteLength);
      ack({ ok: take !== undefined });
    });
  }

  static connect(url: string, token: string, ns: NamespaceId, batch: boolean): Promise<BridgeClient> {
    const query = batch ? { [BRIDGE_BATCH_QUERY]: '1' } : undefined;
    const socket = io(url, { auth: { tokens: [token], label: 'bench bridge probe' }, query, transports: ['websocket'], reconnection: false, forceNew: true });
    return new Promise((resolve, reject) => {
      socket.once('connect_error', reject);
      socket.once(RelayEvent.welcome, () => resolve(new BridgeClient(socket, ns)));
    });
  }

  /** The relay id of the first LAN peer advertised in the namespace. */
  async lanPeer(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const list = parsePeersOut(await this.socket.timeout(5_000).emitWithAck(RelayEvent.peers, { ns: this.ns }));
      const lan = list.peers.map((p) => parseAdvertOut(p)).find((p) => p.lan);
      if (lan) return lan.peerId;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error('the bridge probe saw no LAN peer');
  }

  async fetch(mode: Mode, peerId: string, hash: BlockHash): Promise<{ size: number; firstByteMs: number }> {
    const started = performance.now();
    const request = { ns: this.ns, peerId, hash };
    if (mode === 'store-forward') {
      const reply = parseBridgeFetchReply(await this.socket.timeout(60_000).emitWithAck(RelayEvent.bridgeFetch, request));
      if (!reply.ok) throw new Error(`bridge-fetch failed: ${reply.code} ${reply.message}`);
      return { size: reply.data.byteLength, firstByteMs: performance.now() - started };
    }
    const stream = this.nextStream++;
    let firstByteMs = 0;
    let received = 0;
    this.streams.set(stream, (offset, length) => {
      if (offset !== received) throw new Error(`piece at ${offset}, expected ${received}`);
      if (received === 0) firstByteMs = performance.now() - started;
      received += length;
    });
    try {
      const reply = parseBridgeStreamReply(await this.socket.timeout(60_000).emitWithAck(RelayEvent.bridgeFetch, { ...request, stream }));
      if (!reply.ok) throw new Error(`streamed bridge-fetch failed: ${reply.code} ${reply.message}`);
      if (reply.size !== received) throw new Error(`the verdict says ${reply.size} bytes, ${received} came`);
      return { size: reply.size, firstByteMs };
    } finally {
      this.streams.delete(stream);
    }
  }

  private advertTimer: ReturnType<typeof setInterval> | null = null;

  /** Advertises cursor 0 for the namespace now and every 20 s (the relay keeps an advert 90 s). */
  keepAdvertising(): void {
    const advertise = () => this.socket.emit(RelayEvent.advert, { ns: this.ns, cursor: 0 });
    advertise();
    this.advertTimer = setInterval(advertise, 20_000);
  }

  close(): void {
    if (this.advertTimer) clearInterval(this.advertTimer);
    this.socket.close();
  }
}
