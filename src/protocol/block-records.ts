import { hexOfDigest, type BlockHash } from './block-hash.ts';
import { ValidationError } from './errors.ts';
import { MAX_BLOCK_BATCH_BYTES, MAX_BLOCK_SIZE } from './limits.ts';

/**
 * The body of a batch block download: one record per block, in request order,
 * `hash (32 bytes raw) ‖ length (u32 big-endian) ‖ length bytes`. A length of
 * BLOCK_RECORD_ABSENT says the server will not give that block (the namespace does not
 * reference it, or it is not stored) and carries no bytes. Records missing at the end were
 * cut (the response's byte budget): ask for them again.
 */

export const BLOCK_RECORD_HEADER_BYTES = 36;
export const BLOCK_RECORD_ABSENT = 0xffff_ffff;

/** One record: the block's bytes (unverified), or null when the server refused it. */
export interface BlockRecord {
  hash: BlockHash;
  bytes: Uint8Array | null;
}

/** The 36-byte header of a record; `length` null for an absent block. */
export function encodeBlockRecordHeader(hash: BlockHash, length: number | null): Uint8Array<ArrayBuffer> {
  if (length !== null && !(Number.isInteger(length) && length >= 1 && length <= MAX_BLOCK_SIZE)) {
    throw new RangeError(`a block record holds 1 to ${MAX_BLOCK_SIZE} bytes, not ${length}`);
  }
  const header = new Uint8Array(BLOCK_RECORD_HEADER_BYTES);
  for (let i = 0; i < 32; i++) header[i] = parseInt(hash.slice(i * 2, i * 2 + 2), 16);
  new DataView(header.buffer).setUint32(32, length ?? BLOCK_RECORD_ABSENT);
  return header;
}

/** Where a record stream stands between chunks: inside a header, inside a block's bytes, or between records. */
export type RecordStreamPosition = { inHeader: number } | { inBlock: { filled: number; length: number } } | null;

/**
 * Cuts a record stream into records as chunks arrive, whatever the chunk boundaries. `check`
 * sees each header once complete and gives the block's length, or null for a record without
 * bytes; it throws to refuse the stream. A record wholly inside a chunk is a view into it (no
 * copy: a batch of small blocks is hundreds of records per chunk); one split across chunks is
 * gathered into its own buffer.
 */
export class BlockRecordFramer {
  private readonly header = new Uint8Array(BLOCK_RECORD_HEADER_BYTES);
  private readonly headerView = new DataView(this.header.buffer);
  private headerFilled = 0;
  private current: { hash: BlockHash; bytes: Uint8Array; filled: number } | null = null;

  constructor(private readonly check: (hash: BlockHash, length: number) => number | null) {}

  /** Records completed by this chunk, in order. */
  push(chunk: Uint8Array): BlockRecord[] {
    const records: BlockRecord[] = [];
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
      const hash = hexOfDigest(this.header.subarray(0, 32));
      const length = this.check(hash, this.headerView.getUint32(32));
      if (length === null) records.push({ hash, bytes: null });
      else if (chunk.length - offset >= length) {
        records.push({ hash, bytes: chunk.subarray(offset, offset + length) });
        offset += length;
      } else this.current = { hash, bytes: new Uint8Array(length), filled: 0 };
    }
    return records;
  }

  /** Where the stream stands now (null: between records, where it may end). */
  get position(): RecordStreamPosition {
    if (this.current) return { inBlock: { filled: this.current.filled, length: this.current.bytes.length } };
    return this.headerFilled > 0 ? { inHeader: this.headerFilled } : null;
  }
}

/**
 * Parses a record stream as it arrives, strictly: every record must name the next hash
 * asked for (so none is repeated, skipped or unasked), hold 1 … 4 MiB or be absent, and the
 * block bytes together may not pass MAX_BLOCK_BATCH_BYTES. Memory stays at the current
 * record. Block hashes are not checked here: whoever stores a block verifies it.
 */
export class BlockRecordReader {
  private next = 0;
  private blockBytes = 0;
  private readonly asked: ReadonlySet<BlockHash>;
  private readonly framer = new BlockRecordFramer((hash, length) => this.checkHeader(hash, length));

  constructor(
    private readonly order: readonly BlockHash[],
    private readonly maxBlockBytes = MAX_BLOCK_BATCH_BYTES,
  ) {
    this.asked = new Set(order);
  }

  /** Records completed by this chunk, in order. Throws ValidationError for a broken stream. */
  push(chunk: Uint8Array): BlockRecord[] {
    return this.framer.push(chunk);
  }

  /** The stream ended: refuses one that stopped inside a record. Returns how many records arrived. */
  end(): number {
    if (this.framer.position) throw new ValidationError('blocks', 'the response ended inside a record');
    return this.next;
  }

  /** Checks a header; the block's length, or null for an absent record. */
  private checkHeader(hash: BlockHash, length: number): number | null {
    const index = this.next;
    if (index >= this.order.length) throw new ValidationError(`blocks[${index}]`, 'is a record past the hashes asked for');
    if (hash !== this.order[index]) {
      throw new ValidationError(`blocks[${index}]`, this.asked.has(hash) ? 'names a block out of request order' : 'names a block that was not asked for');
    }
    this.next += 1;
    if (length === BLOCK_RECORD_ABSENT) return null;
    if (length === 0 || length > MAX_BLOCK_SIZE) throw new ValidationError(`blocks[${index}].length`, `must be 1 to ${MAX_BLOCK_SIZE} bytes, not ${length}`);
    this.blockBytes += length;
    if (this.blockBytes > this.maxBlockBytes) throw new ValidationError(`blocks[${index}]`, `takes the response past ${this.maxBlockBytes} block bytes`);
    return length;
  }
}
