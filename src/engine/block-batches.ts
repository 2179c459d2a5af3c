import { MAX_BLOCK_BATCH, type BlockHash, type BlockUpload } from '../protocol/index.ts';
import type { UploadApi } from './types.ts';

/**
 * Block bytes per batch upload request. The protocol allows 16 MiB; a quarter of that keeps
 * a small-file batch (up to 16 MiB) to a few requests, two of them overlapping (one is sent
 * while the server makes the other durable), and lets progress move more than once.
 */
export const UPLOAD_BATCH_BYTES = 4 * 1024 * 1024;
/** Blocks up to this size go in batches; a larger one is worth a request of its own. */
export const BATCHED_BLOCK_MAX = 1024 * 1024;

export interface BlockBatchSenderOptions {
  /** Batch requests in flight at once. */
  batchesInFlight?: number;
  /** Single PUTs in flight at once, against a server without batch uploads. */
  putsInFlight?: number;
  /** Limits of one request (defaults: MAX_BLOCK_BATCH blocks, UPLOAD_BATCH_BYTES). */
  maxBlocks?: number;
  maxBytes?: number;
  /** One block is on the server (its batch was stored, or its PUT answered). */
  onSent?: (hash: BlockHash, bytes: number) => void;
}

/**
 * Sends blocks the server lacks in batch uploads (POST /api/v1/blocks/batch): `add` fills a
 * batch and sends it when the next block would not fit, waiting while `batchesInFlight` are
 * under way (so a caller holds a bounded number of blocks), and `finish` sends the rest.
 * An api without putBlocks, or a server that answers that it has no batch route, gets single
 * PUTs instead, for this batch and every later one.
 */
export class BlockBatchSender {
  private batch: BlockUpload[] = [];
  private bytes = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { error: unknown } | null = null;
  private batchesRefused = false;
  private readonly maxBlocks: number;
  private readonly maxBytes: number;

  constructor(
    private readonly api: UploadApi,
    private readonly options: BlockBatchSenderOptions = {},
  ) {
    this.maxBlocks = Math.min(options.maxBlocks ?? MAX_BLOCK_BATCH, MAX_BLOCK_BATCH);
    this.maxBytes = options.maxBytes ?? UPLOAD_BATCH_BYTES;
  }

  /** Queues one block; resolves when the sender has room for the next. Throws the failure of an earlier send. */
  async add(block: BlockUpload): Promise<void> {
    this.throwIfFailed();
    if (this.batch.length >= this.maxBlocks || (this.batch.length > 0 && this.bytes + block.bytes.length > this.maxBytes)) await this.flush();
    this.batch.push(block);
    this.bytes += block.bytes.length;
  }

  /** Sends what is queued and waits until every block is on the server; throws the first failure. */
  async finish(): Promise<void> {
    await this.flush();
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
    this.throwIfFailed();
  }

  private async flush(): Promise<void> {
    const batch = this.batch;
    this.batch = [];
    this.bytes = 0;
    if (batch.length === 0) return;
    // Without batches, one group of single PUTs at a time (each group runs putsInFlight).
    while (this.inFlight.size >= (this.batching ? (this.options.batchesInFlight ?? 2) : 1)) await Promise.race(this.inFlight);
    const sending: Promise<void> = this.send(batch)
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => this.inFlight.delete(sending));
    this.inFlight.add(sending);
  }

  private async send(batch: BlockUpload[]): Promise<void> {
    if (this.failure) return;
    const answer = this.batching ? await this.api.putBlocks!(batch) : null;
    if (answer === null) {
      this.batchesRefused = true;
      await this.sendOneByOne(batch);
      return;
    }
    for (const block of batch) this.options.onSent?.(block.hash, block.bytes.length);
  }

  /** Whether blocks still go in batch requests. */
  private get batching(): boolean {
    return this.api.putBlocks !== undefined && !this.batchesRefused;
  }

  private async sendOneByOne(blocks: readonly BlockUpload[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < blocks.length && !this.failure; i = next++) {
        await this.api.putBlock(blocks[i].hash, blocks[i].bytes);
        this.options.onSent?.(blocks[i].hash, blocks[i].bytes.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.putsInFlight ?? 4, blocks.length) }, worker));
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }
}
