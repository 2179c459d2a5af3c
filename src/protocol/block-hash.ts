import { ValidationError } from './errors.ts';

/** Lower-case hex SHA-256 of a block's bytes: the block's only name. */
export type BlockHash = string & { readonly __brand: 'BlockHash' };

const HASH_PATTERN = /^[0-9a-f]{64}$/;

export function isBlockHash(value: unknown): value is BlockHash {
  return typeof value === 'string' && HASH_PATTERN.test(value);
}

export function parseBlockHash(value: unknown, field = 'hash'): BlockHash {
  if (!isBlockHash(value)) throw new ValidationError(field, 'must be 64 lower-case hex digits (SHA-256)');
  return value;
}

const HEX_PAIRS = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

export function hexOfDigest(digest: ArrayBuffer | Uint8Array): BlockHash {
  const bytes = digest instanceof Uint8Array ? digest : new Uint8Array(digest);
  let hex = '';
  // A table, not toString + padStart per byte: a join turns 100,000 digests into hex.
  for (let i = 0; i < bytes.length; i++) hex += HEX_PAIRS[bytes[i]];
  return hex as BlockHash;
}
