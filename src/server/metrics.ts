import type { LanBridgeMetrics, ServerMetrics, ServerMetricsReport } from '../protocol/index.ts';

/** Counters since the server started (GET /api/v1/metrics). */
export class Metrics implements ServerMetrics {
  /** Block bytes flushed to client sockets by block GETs. */
  blockBytesServed = 0;
  /** Block GETs whose whole body was sent. */
  blockRequestsServed = 0;
  /** Bytes of block uploads that were verified (stored, or already known). */
  blockBytesReceived = 0;
  /** Journal entries appended (a batch counts each of its entries). */
  commits = 0;
  /** Batch commit requests that committed. */
  commitBatches = 0;
  /** Batch block downloads whose whole response was sent. */
  blockBatchesServed = 0;
  /** Batch block uploads whose blocks were all stored (or already known). */
  blockBatchesReceived = 0;
  /** Journal long polls waiting right now. */
  journalLongPollsOpen = 0;
  /** Relay sockets connected right now. */
  relaySockets = 0;
  /** Adverts broadcast to the members of a namespace (a refresh with an unchanged cursor is not). */
  advertsRelayed = 0;
  /** Signals delivered from one peer to another. */
  signalsRelayed = 0;
  /** Block GC passes this instance completed (not those skipped while another instance collected). */
  blockGcPasses = 0;
  /** Blocks removed by this instance's GC passes, and their bytes. */
  blocksCollected = 0;
  blockBytesCollected = 0;
  /** The LAN bridge's figures, when it runs. */
  lanBridgeFigures: (() => LanBridgeMetrics) | null = null;

  snapshot(): ServerMetricsReport {
    const snapshot: ServerMetricsReport = {
      blockBytesServed: this.blockBytesServed,
      blockRequestsServed: this.blockRequestsServed,
      blockBytesReceived: this.blockBytesReceived,
      commits: this.commits,
      commitBatches: this.commitBatches,
      blockBatchesServed: this.blockBatchesServed,
      blockBatchesReceived: this.blockBatchesReceived,
      journalLongPollsOpen: this.journalLongPollsOpen,
      relaySockets: this.relaySockets,
      advertsRelayed: this.advertsRelayed,
      signalsRelayed: this.signalsRelayed,
      blockGcPasses: this.blockGcPasses,
      blocksCollected: this.blocksCollected,
      blockBytesCollected: this.blockBytesCollected,
    };
    if (this.lanBridgeFigures) snapshot.lanBridge = this.lanBridgeFigures();
    return snapshot;
  }
}
