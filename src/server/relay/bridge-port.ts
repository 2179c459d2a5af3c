import type { AdvertOut, BridgeErrorCode, BridgeFetchIn, BridgeFetchReply, BridgePieceOut, BridgeReadOut, BridgeStreamReply, Cursor, NamespaceId, PeerId, PeerLeft } from '../../protocol/index.ts';

/** A relay socket connected to this instance, as the LAN bridge sees it. */
export interface BridgeSocket {
  readonly peerId: PeerId;
  /** The namespaces its tokens granted. */
  readonly namespaces: readonly NamespaceId[];
  /** Aborted when the socket disconnects. */
  readonly gone: AbortSignal;
  /**
   * Emits `bridge-read` and resolves with the acknowledgement as received (unvalidated: the
   * caller checks it with parseBridgeReadReply); rejects after `timeoutMs` or on disconnect.
   */
  read(request: BridgeReadOut, timeoutMs: number): Promise<unknown>;
  /**
   * It asked for batched pieces in its handshake (BRIDGE_BATCH_QUERY): a `bridge-piece` may
   * carry several whole pieces. Without, one piece per event (an older page).
   */
  readonly batchPieces: boolean;
  /**
   * Emits one `bridge-piece` of a streamed fetch and resolves with its acknowledgement as
   * received (unvalidated: parseBridgePieceAck); rejects after `timeoutMs` or on disconnect.
   */
  piece(piece: BridgePieceOut, timeoutMs: number): Promise<unknown>;
}

/** How the bridge reaches this instance's browsers: events to the members of a namespace here. */
export interface RelayOutlet {
  advert(advert: AdvertOut): void;
  peerLeft(left: PeerLeft): void;
}

/**
 * The LAN bridge as the relay uses it (src/server/lan-bridge): it hears about this
 * instance's sockets and their adverts, adds its LAN peers to `peers` lists, and answers
 * `bridge-fetch` (validated and membership-checked by the relay first).
 */
export interface RelayBridge {
  /** Called once, when the relay starts: where the bridge's adverts and peer-lefts go. */
  attach(outlet: RelayOutlet): void;
  socketJoined(socket: BridgeSocket): void;
  socketLeft(socket: BridgeSocket): void;
  /** A socket's advert (or refresh) for one of its namespaces. */
  browserAdvert(socket: BridgeSocket, ns: NamespaceId, cursor: Cursor): void;
  /** The current adverts of the LAN peers of `ns` (marked `lan`). */
  lanAdverts(ns: NamespaceId): AdvertOut[];
  /** Whether `peerId` is a LAN peer's relay id (they are never signalled). */
  isLanPeer(peerId: PeerId): boolean;
  fetch(socket: BridgeSocket, request: BridgeFetchIn): Promise<BridgeFetchReply>;
  /** A streamed fetch (`request.stream` set): pieces go to the socket as they pass; the reply is the verdict. */
  fetchStream(socket: BridgeSocket, request: BridgeFetchIn & { stream: number }): Promise<BridgeStreamReply>;
  /** The relay refused a bridge-fetch itself (malformed, another namespace): for the bridge's counters. */
  refused(code: BridgeErrorCode): void;
}
