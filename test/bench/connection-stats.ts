import type { Page } from 'playwright-core';

/**
 * What a browser's WebRTC transport did, read from `RTCPeerConnection.getStats()` of every
 * connection a page made: the candidate pair in use and the packets and bytes it carried.
 * Runs of the same code that differ by a fifth in rate and CPU per byte can be told apart by
 * where their packets went (which pair ICE chose) and how many it took per byte.
 *
 * The page's connections are found by an init script that records each one made; it changes
 * nothing else (the app's simple-peer calls the recorded class as it would the browser's).
 * It also gives the page tsx's `__name` helper, which functions evaluated from here may carry.
 */
export const RECORD_CONNECTIONS_SCRIPT = `globalThis.__name ??= (fn) => fn;
(() => {
  if (window !== window.top || window.__nearsyncConnections || typeof RTCPeerConnection !== 'function') return;
  const made = [];
  Object.defineProperty(window, '__nearsyncConnections', { value: made });
  const Native = RTCPeerConnection;
  class RecordedPeerConnection extends Native {
    constructor(...args) {
      super(...args);
      made.push(this);
    }
  }
  window.RTCPeerConnection = RecordedPeerConnection;
})();`;

export interface ConnectionStats {
  /** "host 10.0.0.1:40000 udp", as the browser describes the local end of the pair in use. */
  local: string | null;
  remote: string | null;
  packetsSent: number;
  packetsReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** The pair's current round trip, ms. */
  rttMs: number | null;
  /** Data-channel messages carried, all channels. */
  messagesSent: number;
  messagesReceived: number;
}

/** Every recorded connection's figures (an empty list when the page made none or lacks the script). */
export async function readConnectionStats(page: Page): Promise<ConnectionStats[]> {
  return page.evaluate(async () => {
    const made = (window as unknown as { __nearsyncConnections?: RTCPeerConnection[] }).__nearsyncConnections ?? [];
    const out: ConnectionStats[] = [];
    for (const pc of made) {
      if (pc.connectionState === 'closed') continue;
      const stats = await pc.getStats();
      const byId = new Map<string, Record<string, unknown>>();
      stats.forEach((s: Record<string, unknown>) => byId.set(s.id as string, s));
      let pair: Record<string, unknown> | undefined;
      for (const s of byId.values()) {
        if (s.type === 'transport' && typeof s.selectedCandidatePairId === 'string') pair = byId.get(s.selectedCandidatePairId);
      }
      const describe = (id: unknown) => {
        const c = typeof id === 'string' ? byId.get(id) : undefined;
        return c ? `${String(c.candidateType)} ${String(c.address ?? c.ip)}:${String(c.port)} ${String(c.protocol)}` : null;
      };
      let messagesSent = 0;
      let messagesReceived = 0;
      for (const s of byId.values()) {
        if (s.type !== 'data-channel') continue;
        messagesSent += Number(s.messagesSent ?? 0);
        messagesReceived += Number(s.messagesReceived ?? 0);
      }
      out.push({
        local: describe(pair?.localCandidateId),
        remote: describe(pair?.remoteCandidateId),
        packetsSent: Number(pair?.packetsSent ?? 0),
        packetsReceived: Number(pair?.packetsReceived ?? 0),
        bytesSent: Number(pair?.bytesSent ?? 0),
        bytesReceived: Number(pair?.bytesReceived ?? 0),
        rttMs: typeof pair?.currentRoundTripTime === 'number' ? pair.currentRoundTripTime * 1000 : null,
        messagesSent,
        messagesReceived,
      });
    }
    return out;
  });
}

/** The figures of `after` less those of `before`, connection by connection (same order: connections are only added). */
export function statsBetween(before: ConnectionStats[], after: ConnectionStats[]): ConnectionStats[] {
  return after.map((a, i) => {
    const b = before[i];
    if (!b) return a;
    return {
      ...a,
      packetsSent: a.packetsSent - b.packetsSent,
      packetsReceived: a.packetsReceived - b.packetsReceived,
      bytesSent: a.bytesSent - b.bytesSent,
      bytesReceived: a.bytesReceived - b.bytesReceived,
      messagesSent: a.messagesSent - b.messagesSent,
      messagesReceived: a.messagesReceived - b.messagesReceived,
    };
  });
}

/** One line per connection: the pair, packets each way per MiB of payload received, and the round trip. */
export function describeConnections(stats: ConnectionStats[], payloadBytes: number): string {
  if (stats.length === 0) return 'no connection recorded';
  const mib = payloadBytes / (1024 * 1024);
  return stats
    .map(
      (s) =>
        `${s.local ?? '?'} → ${s.remote ?? '?'}: in ${s.packetsReceived} packets (${(s.packetsReceived / mib).toFixed(1)}/MiB, ` +
        `${(s.bytesReceived / Math.max(1, s.packetsReceived)).toFixed(0)} B each), out ${s.packetsSent} (${(s.packetsSent / mib).toFixed(1)}/MiB), ` +
        `${s.messagesReceived} messages in, rtt ${s.rttMs === null ? '?' : s.rttMs.toFixed(1)} ms`,
    )
    .join('; ');
}
