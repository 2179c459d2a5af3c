import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { BlockStore } from '../storage/block-store.ts';
import type { GcMetadata } from '../storage/gc-metadata.ts';
import { collectBlocks, type GcPassResult, type RetentionSettings } from './block-collector.ts';

export interface BlockGcSettings extends RetentionSettings {
  /** Time between passes; 0 runs none on a timer (passes on demand still run). */
  intervalMs: number;
}

/** The first timed pass runs this soon after start at most, so frequent restarts still collect. */
const FIRST_PASS_MAX_DELAY_MS = 10 * 60_000;

/**
 * Runs block GC passes on a timer, one at a time in this process (on demand too: `runNow`),
 * counts what they collect and logs each pass. Passes on other instances are kept apart by
 * the metadata store's pass lock: a pass that finds it held is skipped (`busy`).
 */
export class BlockGc {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<GcPassResult> = Promise.resolve({ status: 'busy' });
  private readonly stopping = new AbortController();

  constructor(
    private readonly deps: { metadata: GcMetadata; blocks: BlockStore; metrics: Metrics; logger: Logger },
    readonly settings: BlockGcSettings,
  ) {}

  start(): void {
    if (this.settings.intervalMs > 0) this.schedule(Math.min(this.settings.intervalMs, FIRST_PASS_MAX_DELAY_MS));
  }

  /** One pass now, after any pass of this process still running. */
  runNow(): Promise<GcPassResult> {
    const next = this.running.catch(() => undefined).then(() => this.pass());
    this.running = next;
    return next;
  }

  /** Stops the timer and a pass under way (between batches); resolves once it has stopped. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.stopping.abort();
    await this.running.catch(() => undefined);
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runNow()
        .catch((err: unknown) => this.deps.logger.warn('block gc: pass failed', { err }))
        .finally(() => {
          if (!this.stopping.signal.aborted) this.schedule(this.settings.intervalMs);
        });
    }, delayMs);
    this.timer.unref();
  }

  private async pass(): Promise<GcPassResult> {
    if (this.stopping.signal.aborted) return { status: 'stopped', blocksCollected: 0, bytesCollected: 0, blocksKept: 0, retainedOnDisk: false, startedAt: 0, endedAt: 0 };
    const { metadata, blocks, metrics, logger } = this.deps;
    const result = await collectBlocks(metadata, blocks, this.settings, this.stopping.signal);
    if (result.status === 'busy') {
      logger.info('block gc: another instance is collecting; skipped');
      return result;
    }
    metrics.blockGcPasses += 1;
    metrics.blocksCollected += result.blocksCollected;
    metrics.blockBytesCollected += result.bytesCollected;
    logger.info('block gc: pass', {
      status: result.status,
      blocksCollected: result.blocksCollected,
      bytesCollected: result.bytesCollected,
      blocksKept: result.blocksKept,
      ms: result.endedAt - result.startedAt,
    });
    return result;
  }
}
