import * as Comlink from 'comlink';
import {
  ADVERT_INTERVAL_MS,
  parseClientConfig,
  type AdvertOut,
  type BlockHash,
  type NamespaceId,
  type PeerId,
  type SignalData,
} from '../../protocol/index.ts';
import type { PeerTransport } from '../../../workers/sync-api.ts';
import type { SyncApi } from '../sync-client.ts';

/** Where the worker takes a streamed bridge fetch's pieces. */
type BridgePieceSink = Parameters<PeerTransport['bridgeFetch']>[2];
import { isTransferUnsupported, relayThroughPort } from './channel-handoff.ts';
import { PeerConnections } from './peer-connections.ts';
import { RelayClient } from './relay-client.ts';

/**
 * The page's side of peer-to-peer sync for one workspace: the relay socket (adverts,
 * signalling) and the WebRTC connections. It moves no blocks: it hands each connection's
 * block channel to the sync worker, which decides what to fetch and serve.
 */
export class PeerNetwork {
  private relay: RelayClient | null = null;
  private connections: PeerConnections | null = null;
  private readonly adverts = new Map<PeerId, AdvertOut>();
  private readonly labels = new Map<string, string>();
  private lastCursor: number | null = null;
  /** The relay bridges LAN peers (its welcome said so). */
  private lanBridge = false;
  private advertTimer: ReturnType<typeof setInterval> | null = null;
  private stopped = false;

  private constructor(
    private readonly api: SyncApi,
    private readonly ns: NamespaceId,
  ) {}

  static async start(api: SyncApi, ns: NamespaceId, label: string): Promise<PeerNetwork> {
    const network = new PeerNetwork(api, ns);
    await network.connect(label);
    return network;
  }

  stop(): void {
    this.stopped = true;
    if (this.advertTimer) clearInterval(this.advertTimer);
    this.connections?.closeAll();
    this.relay?.close();
  }

  private async connect(label: string): Promise<void> {
    const [{ tokens }, config] = await Promise.all([this.api.relayCredentials(this.ns), loadClientConfig()]);
    if (this.stopped) return;
    await this.api.attachTransport(
      this.ns,
      Comlink.proxy({
        advertise: (cursor: number) => {
          this.lastCursor = cursor;
          this.relay?.advertise(this.ns, cursor);
        },
        wantPeers: (peerIds: string[]) => {
          for (const peerId of peerIds) if (!this.adverts.get(peerId as PeerId)?.lan) this.connections?.want(peerId);
        },
        // The page only passes the pieces on, by transfer, each event's as they come: the worker
        // verifies and stores them. Awaiting each hand-off before the ack carries the worker's
        // pace back to the bridge.
        bridgeFetch: async (peerId: string, hash: string, sink: BridgePieceSink) => {
          const remote = sink as unknown as Comlink.Remote<BridgePieceSink>;
          try {
            if (!this.relay) throw new Error('not connected to the relay');
            return await this.relay.bridgeStream(this.ns, peerId as PeerId, hash as BlockHash, (offset, bytes) => remote(offset, Comlink.transfer(bytes, [bytes.buffer])));
          } finally {
            remote[Comlink.releaseProxy]();
          }
        },
      }),
    );
    this.relay = new RelayClient(location.origin, tokens, label, {
      welcome: (welcome) => {
        // A (re)connection: the relay gave us a fresh id, so earlier connections are stale.
        this.connections?.closeAll();
        this.adverts.clear();
        this.lanBridge = welcome.lanBridge === true;
        this.connections = new PeerConnections(welcome.peerId, config.iceServers, {
          signal: (peerId, data) => this.relay?.signal(peerId as PeerId, data as SignalData),
          channel: (peerId, channel) => void this.handOff(peerId, channel),
          connected: () => undefined,
          closed: (peerId) => void this.api.peerClosed(this.ns, peerId),
        });
        if (this.lastCursor !== null) this.relay?.advertise(this.ns, this.lastCursor);
        void this.api.setSelfPeerId(this.ns, welcome.peerId);
        // No publish here: the relay's `peers` list follows, and the worker holds server
        // fetches until it hears that list.
      },
      peers: (list) => {
        if (list.ns !== this.ns) return;
        this.adverts.clear();
        for (const advert of list.peers) this.adverts.set(advert.peerId, advert);
        this.publishAdverts();
      },
      advert: (advert) => {
        if (advert.ns !== this.ns) return;
        this.adverts.set(advert.peerId, advert);
        this.publishAdverts();
      },
      peerLeft: (left) => {
        if (left.ns !== this.ns) return;
        this.adverts.delete(left.peerId);
        this.connections?.close(left.peerId, 'left the workspace');
        this.publishAdverts();
      },
      signal: (signal) => {
        // Only peers the relay vouches share this workspace may connect through this page.
        if (!signal.namespaces.includes(this.ns)) return;
        this.connections?.onSignal(signal.from, signal.data as Record<string, unknown>);
      },
      bridgeRead: async (read) => {
        if (read.ns !== this.ns) return { ok: false, code: 'not_found', message: 'not this workspace' };
        return this.api.bridgeRead(this.ns, read);
      },
      relayError: (error) => console.warn(`nearsync relay: ${error.code}: ${error.message}`),
      disconnected: () => undefined,
    });
    // Adverts expire on the relay after 90 s: repeat ours every 30 s.
    this.advertTimer = setInterval(() => {
      if (this.lastCursor !== null) this.relay?.advertise(this.ns, this.lastCursor);
    }, ADVERT_INTERVAL_MS);
  }

  private publishAdverts(): void {
    const list = [...this.adverts.values()].map(({ peerId, label, cursor, at, lan }) => ({ peerId, label, cursor, at, lan: lan === true }));
    for (const advert of list) this.labels.set(advert.peerId, advert.label);
    void this.api.setAdverts(this.ns, list, this.lanBridge);
  }

  private async handOff(peerId: string, channel: RTCDataChannel): Promise<void> {
    const peer = { peerId, label: this.labels.get(peerId) ?? 'Browser' };
    try {
      await this.api.attachPeerChannel(this.ns, peer, Comlink.transfer(channel, [channel as unknown as Transferable]));
    } catch (error) {
      if (!isTransferUnsupported(error)) throw error;
      const port = relayThroughPort(channel);
      await this.api.attachPeerChannel(this.ns, peer, Comlink.transfer(port, [port]));
    }
  }
}

async function loadClientConfig() {
  const response = await fetch('/api/v1/config');
  if (!response.ok) throw new Error(`GET /api/v1/config answered ${response.status}`);
  return parseClientConfig(await response.json());
}
