import { parseBlockHash, type BlockHash } from './block-hash.ts';
import { ValidationError } from './errors.ts';
import { expectArray, expectInteger, expectOnlyKeys, expectRecord } from './fields.ts';
import { MAX_BLOCK_SIZE } from './limits.ts';

/**
 * Piece hashes (docs/protocol.md, `POST /api/v1/ns/:ns/pieces`): the SHA-256 of each fixed
 * 64 KiB piece of a block, so bytes arriving from an untrusted peer can be checked, and used,
 * piece by piece before the whole block (whose hash covers all of it) is in. Only the server
 * gives them: it verified the block when it was uploaded.
 */

/** Bytes per piece: one DATA frame of a peer link (BLOCK_CHUNK_SIZE), so a piece checks as soon as its frame is in. */
export const PIECE_SIZE = 64 * 1024;
/** Blocks one request may ask about (the server may have to read and hash each: 256 MiB at most). */
export const MAX_PIECE_REQUEST_BLOCKS = 64;

export interface PieceHashRequest {
  hashes: BlockHash[];
}

/** One block's pieces: `pieces[i]` is the SHA-256 of bytes [i × PIECE_SIZE, min(size, (i+1) × PIECE_SIZE)). */
export interface BlockPieces {
  hash: BlockHash;
  size: number;
  pieces: BlockHash[];
}

export interface PieceHashResponse {
  pieceSize: number;
  /** One entry per asked hash, in request order; null where the workspace does not reference it or it is not stored. */
  blocks: Array<BlockPieces | { hash: BlockHash; size: null }>;
}

export function pieceCount(size: number): number {
  return Math.ceil(size / PIECE_SIZE);
}

export function parsePieceHashRequest(value: unknown): PieceHashRequest {
  const record = expectRecord(value, 'body');
  expectOnlyKeys(record, 'body', ['hashes']);
  const items = expectArray(record.hashes, 'hashes', MAX_PIECE_REQUEST_BLOCKS);
  if (items.length === 0) throw new ValidationError('hashes', 'must have at least one item');
  const seen = new Set<BlockHash>();
  const hashes = items.map((item, i) => {
    const hash = parseBlockHash(item, `hashes[${i}]`);
    if (seen.has(hash)) throw new ValidationError(`hashes[${i}]`, 'repeats an earlier hash');
    seen.add(hash);
    return hash;
  });
  return { hashes };
}

/**
 * Checks a response against the request it answers: the same hashes in the same order, each
 * either absent (`size` null) or with exactly ceil(size / PIECE_SIZE) piece hashes.
 * Returns the blocks the server described, by hash.
 */
export function parsePieceHashResponse(value: unknown, asked: readonly BlockHash[]): Map<BlockHash, BlockPieces> {
  const record = expectRecord(value, 'body');
  expectOnlyKeys(record, 'body', ['pieceSize', 'blocks']);
  if (record.pieceSize !== PIECE_SIZE) throw new ValidationError('pieceSize', `must be ${PIECE_SIZE}`);
  const items = expectArray(record.blocks, 'blocks', MAX_PIECE_REQUEST_BLOCKS);
  if (items.length !== asked.length) throw new ValidationError('blocks', `must hold one entry per asked hash (${asked.length})`);
  const result = new Map<BlockHash, BlockPieces>();
  items.forEach((item, i) => {
    const field = `blocks[${i}]`;
    const entry = expectRecord(item, field);
    const hash = parseBlockHash(entry.hash, `${field}.hash`);
    if (hash !== asked[i]) throw new ValidationError(`${field}.hash`, 'must be the hash asked for at that position');
    if (entry.size === null) {
      expectOnlyKeys(entry, field, ['hash', 'size']);
      return;
    }
    expectOnlyKeys(entry, field, ['hash', 'size', 'pieces']);
    const size = expectInteger(entry.size, `${field}.size`, 1, MAX_BLOCK_SIZE);
    const list = expectArray(entry.pieces, `${field}.pieces`, pieceCount(MAX_BLOCK_SIZE));
    if (list.length !== pieceCount(size)) throw new ValidationError(`${field}.pieces`, `must hold ${pieceCount(size)} hashes for ${size} bytes`);
    const pieces = list.map((piece, j) => parseBlockHash(piece, `${field}.pieces[${j}]`));
    result.set(hash, { hash, size, pieces });
  });
  return result;
}
