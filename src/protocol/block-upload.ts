import { hexOfDigest, type BlockHash } from './block-hash.ts';
import { BLOCK_RECORD_ABSENT, BLOCK_RECORD_HEADER_BYTES, encodeBlockRecordHeader } from './block-records.ts';
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
  private readonly header = new Uint8Array(BLOCK_RECORD_HEADER_BYTES);
  private headerFilled = 0;
  private current: { hash: BlockHash; bytes: Uint8Array; filled: number } | null = null;
  private blockBytes = 0;
  private readonly seen = new Map<BlockHash, number>();

  constructor(
    private readonly maxRecords = MAX_BLOCK_BATCH,
    private readonly maxBlockBytes = MAX_BLOCK_BATCH_BYTES,
  ) {}

  /** Records completed by this chunk, in order. Throws ValidationError for a broken body. */
  push(chunk: Uint8Array): BlockUpload[] {
    const records: BlockUpload[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.current) {
        const { bytes } = this.current;
        const take = Math.min(bytes.length - this.current.filled, chunk.length - offset);
        bytes.set(chunk.subarray(offset, offset + take), this.current.filled);
        this.current.filled += take;
        offset += take;
        if (this.current.filled === bytes.length) {
          records.push({ hash: this.current.hash, bytes });
          this.current = null;
        }
        continue;
      }
      const take = Math.min(BLOCK_RECORD_HEADER_BYTES - this.headerFilled, chunk.length - offset);
      this.header.set(chunk.subarray(offset, offset + take), this.headerFilled);
      this.headerFilled += take;
      offset += take;
      if (this.headerFilled < BLOCK_RECORD_HEADER_BYTES) break;
      this.headerFilled = 0;
      this.startRecord();
    }
    return records;
  }

  /** The body ended: refuses one that is empty or stopped inside a record. Returns the record count. */
  end(): number {
    const field = `blocks[${this.current ? this.count - 1 : this.count}]`;
    if (this.current) {
      throw new ValidationError(field, `the body ended after ${this.current.filled} of the record's ${this.current.bytes.length} bytes`);
    }
    if (this.headerFilled > 0) throw new ValidationError(field, `the body ended inside the record's header (${this.headerFilled} of 36 bytes)`);
    if (this.count === 0) throw new ValidationError('blocks', 'a batch holds at least one block');
    return this.count;
  }

  private startRecord(): void {
    const index = this.count;
    const field = `blocks[${index}]`;
    if (index >= this.maxRecords) throw new ValidationError(field, `is past the ${this.maxRecords} blocks a batch may hold`);
    const hash = hexOfDigest(this.header.subarray(0, 32));
    const length = new DataView(this.header.buffer).getUint32(32);
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
    this.current = { hash, bytes: new Uint8Array(length), filled: 0 };
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
