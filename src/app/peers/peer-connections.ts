import SimplePeer from 'simple-peer/simplepeer.min.js';

/**
 * One RTCPeerConnection per remote peer, negotiated with simple-peer on the main thread
 * (workers have no RTCPeerConnection). Blocks do not use simple-peer's own channel: each
 * connection gets a second, negotiated data channel that is handed, still connecting, to the
 * sync worker, so block bytes never cross this thread.
 *
 * Exactly one side offers: the peer with the smaller id. The other side, when it wants a
 * connection, asks for an offer with a `{type: 'connect'}` signal.
 */

/** Negotiated channel id: far above the ids the browser assigns to in-band channels. */
export const BLOCK_CHANNEL_ID = 1000;
export const BLOCK_CHANNEL_LABEL = 'nearsync-blocks';
const CONNECT_TIMEOUT_MS = 20_000;

export type SignalData = Record<string, unknown>;

export interface PeerConnectionEvents {
  /** Send `data` to `peerId` through the relay. */
  signal(peerId: string, data: SignalData): void;
  /** The block channel of a new connection, not yet open: give it to the worker now. */
  channel(peerId: string, channel: RTCDataChannel): void;
  connected(peerId: string): void;
  closed(peerId: string, reason: string): void;
}

interface Connection {
  peer: SimplePeer.Instance;
  connected: boolean;
  timer: ReturnType<typeof setTimeout>;
}

export class PeerConnections {
  private readonly connections = new Map<string, Connection>();

  constructor(
    private readonly selfId: string,
    private readonly iceServers: RTCIceServer[],
    private readonly events: PeerConnectionEvents,
    private readonly maxConnections = 8,
  ) {}

  has(peerId: string): boolean {
    return this.connections.has(peerId);
  }

  get size(): number {
    return this.connections.size;
  }

  /** We want blocks from `peerId`: offer, or ask it to offer when the rule says it should. */
  want(peerId: string): void {
    if (peerId === this.selfId || this.connections.has(peerId) || this.connections.size >= this.maxConnections) return;
    if (this.offersTo(peerId)) this.open(peerId, true);
    else this.events.signal(peerId, { type: 'connect' });
  }

  /** A signal relayed from `from` (already validated by the relay client). */
  onSignal(from: string, data: SignalData): void {
    if (from === this.selfId) return;
    if (data.type === 'connect') {
      // The other side wants us to offer; we do so if we have room.
      if (this.offersTo(from) && !this.connections.has(from) && this.connections.size < this.maxConnections) {
        this.open(from, true);
      }
      return;
    }
    let connection = this.connections.get(from);
    if (!connection) {
      // Only the smaller id offers; an offer from a larger id breaks the rule: ignore it.
      if (data.type !== 'offer' || this.offersTo(from) || this.connections.size >= this.maxConnections) return;
      connection = this.open(from, false);
    }
    try {
      connection.peer.signal(data as unknown as SimplePeer.SignalData);
    } catch (error) {
      this.close(from, `bad signal: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  close(peerId: string, reason = 'closed'): void {
    const connection = this.connections.get(peerId);
    if (!connection) return;
    this.connections.delete(peerId);
    clearTimeout(connection.timer);
    connection.peer.destroy();
    this.events.closed(peerId, reason);
  }

  closeAll(): void {
    for (const peerId of [...this.connections.keys()]) this.close(peerId, 'shutting down');
  }

  private offersTo(peerId: string): boolean {
    return this.selfId < peerId;
  }

  private open(peerId: string, initiator: boolean): Connection {
    const peer = new SimplePeer({ initiator, trickle: true, config: { iceServers: this.iceServers } });
    const connection: Connection = {
      peer,
      connected: false,
      timer: setTimeout(() => {
        if (!connection.connected) this.close(peerId, 'connection timed out');
      }, CONNECT_TIMEOUT_MS),
    };
    this.connections.set(peerId, connection);
    peer.on('signal', (data: SimplePeer.SignalData) => this.events.signal(peerId, data as unknown as SignalData));
    peer.on('connect', () => {
      connection.connected = true;
      clearTimeout(connection.timer);
      this.events.connected(peerId);
    });
    peer.on('close', () => this.close(peerId, 'peer closed the connection'));
    peer.on('error', (error: Error) => this.close(peerId, error.message));
    // simple-peer keeps its RTCPeerConnection here; the block channel needs it directly.
    const pc = (peer as unknown as { _pc: RTCPeerConnection })._pc;
    const channel = pc.createDataChannel(BLOCK_CHANNEL_LABEL, { negotiated: true, id: BLOCK_CHANNEL_ID, ordered: true });
    channel.binaryType = 'arraybuffer';
    this.events.channel(peerId, channel);
    return connection;
  }
}
