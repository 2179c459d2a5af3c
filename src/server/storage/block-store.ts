import type { Readable } from 'node:stream';
import type { BlockHash } from '../../protocol/index.ts';

/** Why a block upload was refused. Nothing is stored when one is thrown. */
export class BlockRejectedError extends Error {
  override readonly name = 'BlockRejectedError';
  constructor(
    readonly reason: 'too_large' | 'hash_mismatch' | 'empty',
    message: string,
  ) {
    super(message);
  }
}

export type PutResult = { status: 'created' | 'exists'; size: number };
export type NamedPutResult = PutResult & { hash: BlockHash };

/** A block in memory whose bytes the caller has already checked against its hash. */
export interface VerifiedBlock {
  hash: BlockHash;
  bytes: Uint8Array;
}

/**
 * A stored block opened for reading: its bytes as a stream, or (a store may do this for
 * small blocks, where a stream costs far more than the read) already in memory. Either way
 * `size` is the byte count; a stream not read to its end must be destroyed.
 */
export type OpenedBlock = { size: number; stream: Readable; bytes?: undefined } | { size: number; bytes: Buffer; stream?: undefined };

/** A stored block as block GC lists it. */
export interface StoredBlock {
  hash: BlockHash;
  size: number;
  /** When it was stored, ms since the epoch: file mtime, S3 LastModified (the store's clock). */
  storedAt: number;
}

/**
 * Content-addressed block bytes, shared by all namespaces. Blocks are immutable: once a
 * hash is stored, its bytes never change. Only block GC removes blocks (`remove`); since
 * other instances may remove them too, cached sizes are dropped whenever the GC generation
 * moves (`forgetSizes`, see GcMetadata).
 */
export interface BlockStore {
  /** Stored size of a block, or null when it is not stored. */
  stat(hash: BlockHash): Promise<number | null>;
  /** stat() for many hashes, aligned with the input. */
  statMany(hashes: readonly BlockHash[]): Promise<(number | null)[]>;
  /**
   * Receives a block: hashes while reading `body`, at most `maxBytes`, and stores it
   * atomically only when the SHA-256 equals `hash`. Throws BlockRejectedError for a bad
   * block, or the body's own error when the upload breaks off; either way nothing is kept.
   */
  put(hash: BlockHash, body: BlockBody, maxBytes: number): Promise<PutResult>;
  /**
   * Receives a block that names no hash (POST /api/v1/blocks): hashes while reading `body`, at
   * most `maxBytes`, and stores it under that SHA-256. Throws BlockRejectedError (`empty`,
   * `too_large`) or the body's own error; either way nothing is kept.
   */
  putUnnamed(body: BlockBody, maxBytes: number): Promise<NamedPutResult>;
  /**
   * Stores many verified blocks (a batch upload) and resolves, aligned with the input, once
   * every one is durable: created now, or already stored. A hash given twice is stored once.
   * On a failure some of the blocks may be stored (each whole), none partly.
   */
  putMany(blocks: readonly VerifiedBlock[]): Promise<PutResult[]>;
  /** The block's bytes (a stream, or in memory) and their count, or null when not stored. */
  openRead(hash: BlockHash): Promise<OpenedBlock | null>;
  /** Every stored block (any order; a block stored or removed meanwhile may or may not appear). */
  list(): AsyncIterable<StoredBlock>;
  /** Deletes the blocks (block GC only; absent ones are skipped) and forgets their sizes. */
  remove(hashes: readonly BlockHash[]): Promise<void>;
  /**
   * Drops every cached size, and the answer of every check under way, so later checks ask the
   * store itself: blocks may have been removed by another instance.
   */
  forgetSizes(): void;
  close(): Promise<void>;
}

/** Feeds a body's chunks to `onChunk` (awaiting it for backpressure); resolves with the byte count. */
export type BlockBody = (onChunk: (chunk: Buffer) => void | Promise<void>) => Promise<number>;
