import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { LanBridgeMetrics } from '../protocol/index.ts';
import type { Metrics } from './metrics.ts';

/** Engines in use, exported as labels of nearsync_info. */
export interface EngineLabels {
  metadata: string;
  blocks: string;
  relay: string;
}

/**
 * Process figures (CPU, memory, event-loop lag, GC) belong to the process, not to a server
 * instance, and prom-client's collectors start monitors that are never stopped: so they are
 * collected once per process and shown by every instance in it.
 */
let processRegistry: Registry | null = null;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: 'nearsync_' });
  }
  return processRegistry;
}

/**
 * GET /metrics in the Prometheus text format, per server instance. Each instance owns its
 * registry (not prom-client's global one), so several servers in one process (tests, the
 * multi-instance harness) do not mix their figures. The counters the JSON endpoint already
 * keeps are read at scrape time rather than counted twice.
 */
export class PrometheusExporter {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly durations: Histogram<'route'>;

  constructor(metrics: Metrics, engines: EngineLabels, features: { lanBridge?: boolean } = {}) {
    const registers = [this.registry];
    new Gauge({
      name: 'nearsync_info',
      help: 'Always 1; the labels name the engines this instance runs on',
      labelNames: ['metadata', 'blocks', 'relay'],
      registers,
    }).set({ ...engines }, 1);
    this.requests = new Counter({
      name: 'nearsync_http_requests_total',
      help: 'HTTP requests answered, by route pattern and status (status 0: the client went away first)',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.durations = new Histogram({
      name: 'nearsync_http_request_duration_seconds',
      help: 'Time from request to response end, by route pattern (long polls included)',
      labelNames: ['route'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers,
    });
    const counterOf = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    const gaugeOf = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    counterOf('nearsync_block_bytes_served_total', 'Block bytes flushed to clients by block downloads', () => metrics.blockBytesServed);
    counterOf('nearsync_block_requests_served_total', 'Blocks whose whole bytes were sent (single GETs and inside batches)', () => metrics.blockRequestsServed);
    counterOf('nearsync_block_bytes_received_total', 'Verified block upload bytes', () => metrics.blockBytesReceived);
    counterOf('nearsync_commits_total', 'Journal entries appended', () => metrics.commits);
    counterOf('nearsync_commit_batches_total', 'Batch commit requests that committed', () => metrics.commitBatches);
    counterOf('nearsync_block_batches_served_total', 'Batch block downloads whose whole response was sent', () => metrics.blockBatchesServed);
    counterOf('nearsync_block_batches_received_total', 'Batch block uploads whose blocks were all stored', () => metrics.blockBatchesReceived);
    gaugeOf('nearsync_journal_long_polls_open', 'Journal long polls waiting now', () => metrics.journalLongPollsOpen);
    gaugeOf('nearsync_relay_sockets', 'Relay sockets connected to this instance now', () => metrics.relaySockets);
    counterOf('nearsync_adverts_relayed_total', 'Adverts broadcast to the members of a namespace', () => metrics.advertsRelayed);
    counterOf('nearsync_signals_relayed_total', 'WebRTC signals delivered from one peer to another', () => metrics.signalsRelayed);
    counterOf('nearsync_block_gc_passes_total', 'Block GC passes this instance completed', () => metrics.blockGcPasses);
    counterOf('nearsync_blocks_collected_total', 'Blocks removed by block GC on this instance', () => metrics.blocksCollected);
    counterOf('nearsync_block_bytes_collected_total', 'Bytes of the blocks removed by block GC on this instance', () => metrics.blockBytesCollected);
    if (features.lanBridge) registerLanBridgeMetrics(registers, () => metrics.lanBridgeFigures?.() ?? null);
  }

  /** Counts one answered request; `route` is the matched pattern, never the raw path (bounded label values). */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.requests.inc({ method: KNOWN_METHODS.has(method) ? method : 'other', route, status: String(status) });
    this.durations.observe({ route }, seconds);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    const all = Registry.merge([this.registry, processMetrics()]);
    return { contentType: all.contentType, body: await all.metrics() };
  }
}

/** The LAN bridge's figures (only registered when the bridge runs), read at scrape time. */
function registerLanBridgeMetrics(registers: Registry[], read: () => LanBridgeMetrics | null): void {
  const labelled = (name: string, help: string, label: string, values: (figures: LanBridgeMetrics) => Record<string, number>) =>
    new Counter({
      name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        const figures = read();
        if (!figures) return;
        for (const [value, count] of Object.entries(values(figures))) this.inc({ [label]: value }, count);
      },
    });
  const gauge = (name: string, help: string, value: (figures: LanBridgeMetrics) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const figures = read();
        this.set(figures ? value(figures) : 0);
      },
    });
  gauge('nearsync_lan_bridge_peers', 'LAN peers bridged to browsers of this instance now', (f) => f.lanPeers);
  gauge('nearsync_lan_bridge_namespaces', 'Namespaces bridged now (a browser of each is connected here)', (f) => f.namespaces);
  gauge('nearsync_lan_bridge_links', 'TCP links to LAN peers open now', (f) => f.links);
  gauge('nearsync_lan_bridge_peers_banned', 'LAN peers banned for this run (protocol errors, bad blocks)', (f) => f.lanPeersBanned);
  labelled('nearsync_lan_bridge_bytes_total', 'Block bytes carried by the LAN bridge, by direction', 'direction', (f) => ({
    lan_to_browser: f.bytesLanToBrowsers,
    browser_to_lan: f.bytesBrowsersToLan,
  }));
  labelled('nearsync_lan_bridge_fetches_total', 'bridge-fetch requests of browsers, by outcome (ok or the error code)', 'outcome', (f) => ({
    ok: f.fetchesOk,
    ...f.fetchesFailed,
  }));
  labelled('nearsync_lan_bridge_lan_requests_total', 'Blocks LAN peers asked of the bridge, by outcome', 'outcome', (f) => ({
    served: f.lanRequestsServed,
    not_found: f.lanRequestsNotFound,
  }));
  labelled('nearsync_lan_bridge_browser_read_failures_total', 'Blocks a browser failed to give the bridge, by reason', 'reason', (f) => f.browserReadFailures);
  labelled('nearsync_lan_bridge_udp_datagrams_total', 'LAN advert datagrams heard, by outcome (accepted or the drop reason)', 'outcome', (f) => f.udpDatagrams);
  labelled('nearsync_lan_bridge_tcp_refused_total', 'Connections to the bridge block service refused, by reason', 'reason', (f) => f.tcpRefused);
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']);
