import { createHash, type Hash } from 'node:crypto';
import type { BlockHash } from '../../protocol/index.ts';
import { BlockRejectedError, type BlockBody, type PutResult } from './block-store.ts';

/**
 * Counts and hashes an upload as it arrives, and decides whether it is the block it claims
 * to be. Every BlockStore uses it, so all of them reject the same bodies for the same reasons.
 */
export class BlockVerifier {
  private readonly hasher: Hash = createHash('sha256');
  private received = 0;

  /** `hash` null: the body names no block, and `name()` says what it is. */
  constructor(
    private readonly hash: BlockHash | null,
    private readonly maxBytes: number,
  ) {}

  /** Bytes seen so far. */
  get size(): number {
    return this.received;
  }

  /** Takes the next chunk; throws `too_large` as soon as the body passes the limit. */
  update(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.received > this.maxBytes) throw new BlockRejectedError('too_large', `block is larger than ${this.maxBytes} bytes`);
    this.hasher.update(chunk);
  }

  /** Call once, after the last chunk: throws `empty` or `hash_mismatch` unless the body is the block. */
  verify(): void {
    const actual = this.name();
    if (actual !== this.hash) throw new BlockRejectedError('hash_mismatch', `body hashes to ${actual}, not ${this.hash}`);
  }

  /** Call once, after the last chunk: the body's SHA-256; throws `empty` for no bytes. */
  name(): BlockHash {
    if (this.received === 0) throw new BlockRejectedError('empty', 'a block is never empty');
    return this.hasher.digest('hex') as BlockHash;
  }
}

/**
 * The answer to an upload of a block already stored: the body is still read and checked
 * (a wrong body is refused the same way as for a new block), and nothing is kept.
 */
export async function verifyKnownBlock(verifier: BlockVerifier, body: BlockBody): Promise<PutResult> {
  await body((chunk) => verifier.update(chunk));
  verifier.verify();
  return { status: 'exists', size: verifier.size };
}
