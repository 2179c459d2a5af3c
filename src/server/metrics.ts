import type { ServerMetrics } from '../protocol/index.ts';

/** Counters since the server started (GET /api/v1/metrics). */
export class Metrics implements ServerMetrics {
  /** Block bytes flushed to client sockets by block GETs. */
  blockBytesServed = 0;
  /** Block GETs whose whole body was sent. */
  blockRequestsServed = 0;
  /** Bytes of block uploads that were verified (stored, or already known). */
  blockBytesReceived = 0;
  /** Journal entries appended. */
  commits = 0;
  /** Journal long polls waiting right now. */
  journalLongPollsOpen = 0;

  snapshot(): ServerMetrics {
    return {
      blockBytesServed: this.blockBytesServed,
      blockRequestsServed: this.blockRequestsServed,
      blockBytesReceived: this.blockBytesReceived,
      commits: this.commits,
      journalLongPollsOpen: this.journalLongPollsOpen,
    };
  }
}
