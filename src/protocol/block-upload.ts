import type { BlockHash } from './block-hash.ts';
import { BLOCK_RECORD_ABSENT, BLOCK_RECORD_HEADER_BYTES, BlockRecordFramer, encodeBlockRecordHeader } from './block-records.ts';
import { expectRecord } from './fields.ts';
import { ValidationError } from './errors.ts';
import { MAX_BLOCK_BATCH, MAX_BLOCK_BATCH_BYTES, MAX_BLOCK_SIZE } from './limits.ts';

/**
 * The body of a batch block upload (POST /api/v1/blocks/batch, docs/protocol.md "Batch block
 * upload"): the record format of the batch download, `hash (32 bytes raw) ‖ length (u32
 * big-endian) ‖ length bytes`, with no request order to follow and no absent records. A
 * batch holds 1 … MAX_BLOCK_BATCH records, each of 1 … MAX_BLOCK_SIZE bytes, at most
 * MAX_BLOCK_BATCH_BYTES of block bytes together, and names no hash twice.
 */

/** One uploaded block: its bytes as sent (the server verifies the hash before storing anything). */
export interface BlockUpload {
  hash: BlockHash;
  bytes: Uint8Array;
}

/** The answer to a batch block upload: how many blocks were stored now, and how many were already. */
export interface BlockUploadBatchResponse {
  created: number;
  existing: number;
}

/** The block bytes of a batch went past MAX_BLOCK_BATCH_BYTES (the server answers 413). */
export class BlockBatchTooLargeError extends ValidationError {}

/** Bytes a batch body of these block sizes takes. */
export function blockUploadBodyBytes(blockBytes: number, count: number): number {
  return blockBytes + count * BLOCK_RECORD_HEADER_BYTES;
}

/** The body of a batch upload, as parts (headers and the blocks' own bytes, not copied). */
export function encodeBlockUploadParts(blocks: readonly BlockUpload[]): Uint8Array<ArrayBuffer>[] {
  return blocks.flatMap(({ hash, bytes }) => [encodeBlockRecordHeader(hash, bytes.length), bytes as Uint8Array<ArrayBuffer>]);
}

/**
 * Parses a batch upload body as it arrives, strictly: a record that breaks a rule throws a
 * ValidationError naming it (`blocks[i]`, `blocks[i].length`) as soon as its header is read.
 * Memory is the bytes of the records so far (a batch is stored whole or not at all).
 * Block hashes are not checked here: the server verifies each one.
 */
export class BlockUploadReader {
  private count = 0;
  private blockBytes = 0;
  private readonly seen = new Map<BlockHash, number>();
  private readonly framer = new BlockRecordFramer((hash, length) => this.checkHeader(hash, length));

  constructor(
    private readonly maxRecords = MAX_BLOCK_BATCH,
    private readonly maxBlockBytes = MAX_BLOCK_BATCH_BYTES,
  ) {}

  /** Records completed by this chunk, in order. Throws ValidationError for a broken body. */
  push(chunk: Uint8Array): BlockUpload[] {
    // checkHeader never lets an absent record through: every record carries bytes.
    return this.framer.push(chunk) as BlockUpload[];
  }

  /** The body ended: refuses one that is empty or stopped inside a record. Returns the record count. */
  end(): number {
    const position = this.framer.position;
    if (position && 'inBlock' in position) {
      throw new ValidationError(`blocks[${this.count - 1}]`, `the body ended after ${position.inBlock.filled} of the record's ${position.inBlock.length} bytes`);
    }
    if (position) throw new ValidationError(`blocks[${this.count}]`, `the body ended inside the record's header (${position.inHeader} of ${BLOCK_RECORD_HEADER_BYTES} bytes)`);
    if (this.count === 0) throw new ValidationError('blocks', 'a batch holds at least one block');
    return this.count;
  }

  private checkHeader(hash: BlockHash, length: number): number {
    const index = this.count;
    const field = `blocks[${index}]`;
    if (index >= this.maxRecords) throw new ValidationError(field, `is past the ${this.maxRecords} blocks a batch may hold`);
    if (length === BLOCK_RECORD_ABSENT) throw new ValidationError(`${field}.length`, 'is the absent marker, which an upload may not send');
    if (length === 0 || length > MAX_BLOCK_SIZE) throw new ValidationError(`${field}.length`, `must be 1 to ${MAX_BLOCK_SIZE} bytes, not ${length}`);
    const earlier = this.seen.get(hash);
    if (earlier !== undefined) throw new ValidationError(field, `repeats blocks[${earlier}] (${hash})`);
    this.blockBytes += length;
    if (this.blockBytes > this.maxBlockBytes) {
      throw new BlockBatchTooLargeError(field, `takes the batch past ${this.maxBlockBytes} block bytes`);
    }
    this.seen.set(hash, index);
    this.count += 1;
    return length;
  }
}

/** A whole batch upload body, parsed strictly (BlockUploadReader). */
export function parseBlockUploadBatch(body: Uint8Array): BlockUpload[] {
  const reader = new BlockUploadReader();
  const records = reader.push(body);
  reader.end();
  return records;
}

/** The server's answer to a batch of `count` blocks: two counts that add up to it. */
export function parseBlockUploadBatchResponse(value: unknown, count: number): BlockUploadBatchResponse {
  const record = expectRecord(value, 'response');
  const counts = (['created', 'existing'] as const).map((key) => {
    const n = record[key];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new ValidationError(key, 'must be a whole number of blocks');
    return n;
  });
  if (counts[0] + counts[1] !== count) throw new ValidationError('created', `and existing must add up to the ${count} blocks sent`);
  return { created: counts[0], existing: counts[1] };
}
