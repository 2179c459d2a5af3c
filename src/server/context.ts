import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClientConfig } from '../protocol/index.ts';
import type { EgressLimiter } from './egress.ts';
import type { GcGenerationWatch } from './gc/gc-generation.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { JournalNotifier } from './notifier.ts';
import type { BlockStore } from './storage/block-store.ts';
import type { PieceHashes } from './storage/piece-hashes.ts';
import type { SharedReads } from './shared-reads.ts';
import type { Slots } from './slots.ts';
import type { JournalRead, MetadataStore } from './storage/metadata-store.ts';

/** What every route handler can reach: the stores and the server-wide services. */
export interface ServerDeps {
  metadata: MetadataStore;
  blocks: BlockStore;
  /** Per-piece hashes of stored blocks, computed on first ask and cached (piece-hashes.ts). */
  pieceHashes: PieceHashes;
  notifier: JournalNotifier;
  /** HISTORY_DAYS in ms: how long old versions and deleted files keep their blocks. */
  historyMs: number;
  /** Drops cached block sizes when block GC removed blocks since this instance last looked. */
  gcGeneration: GcGenerationWatch;
  /** Identical journal reads in flight share one query (many long polls wake together). */
  journalReads: SharedReads<JournalRead>;
  /** Batch block uploads held in memory at once (each up to 16 MiB); more wait, unread. */
  blockUploadBatches: Slots;
  metrics: Metrics;
  egress: EgressLimiter | null;
  logger: Logger;
  /** Aborted when the server starts shutting down (long polls answer at once). */
  shutdown: AbortSignal;
  /** What GET /api/v1/config hands to browsers (ICE servers). */
  clientConfig: ClientConfig;
  /** The origin share links point at, for this request. */
  publicUrl(req: IncomingMessage): string;
}

/** One request as a handler sees it. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** The request path and query as sent (not normalised), e.g. for static path checks. */
  rawPath: string;
  params: Record<string, string>;
  /** Aborted when the client disconnects before the response is complete. */
  clientGone: AbortSignal;
  /** Response body bytes, for the request log. */
  stats: { bytesOut: number };
}

export type Handler = (ctx: RequestContext, deps: ServerDeps) => Promise<void>;
