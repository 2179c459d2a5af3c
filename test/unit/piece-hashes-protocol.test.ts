import { describe, expect, it } from 'vitest';
import { PIECE_SIZE, ValidationError, parsePieceHashRequest, parsePieceHashResponse, type BlockHash } from '../../src/protocol/index.ts';

const h = (digit: string) => digit.repeat(64) as BlockHash;

describe('piece hash messages', () => {
  it('accepts a well-formed answer and returns the described blocks by hash', () => {
    const body = {
      pieceSize: PIECE_SIZE,
      blocks: [
        { hash: h('a'), size: PIECE_SIZE + 1, pieces: [h('1'), h('2')] },
        { hash: h('b'), size: null },
      ],
    };
    const parsed = parsePieceHashResponse(body, [h('a'), h('b')]);
    expect([...parsed.keys()]).toEqual([h('a')]);
    expect(parsed.get(h('a'))).toEqual({ hash: h('a'), size: PIECE_SIZE + 1, pieces: [h('1'), h('2')] });
  });

  it('refuses answers that do not fit the request', () => {
    const asked = [h('a')];
    const good = { hash: h('a'), size: PIECE_SIZE, pieces: [h('1')] };
    for (const body of [
      null,
      { pieceSize: 1024, blocks: [good] },
      { pieceSize: PIECE_SIZE, blocks: [] },
      { pieceSize: PIECE_SIZE, blocks: [good, good] },
      { pieceSize: PIECE_SIZE, blocks: [{ ...good, hash: h('c') }] },
      { pieceSize: PIECE_SIZE, blocks: [{ ...good, pieces: [h('1'), h('2')] }] },
      { pieceSize: PIECE_SIZE, blocks: [{ ...good, pieces: [] }] },
      { pieceSize: PIECE_SIZE, blocks: [{ ...good, pieces: ['xyz'] }] },
      { pieceSize: PIECE_SIZE, blocks: [{ ...good, size: 0 }] },
      { pieceSize: PIECE_SIZE, blocks: [{ ...good, size: 4 * 1024 * 1024 + 1 }] },
      { pieceSize: PIECE_SIZE, blocks: [{ ...good, size: 1.5 }] },
      { pieceSize: PIECE_SIZE, blocks: [{ ...good, extra: true }] },
      { pieceSize: PIECE_SIZE, blocks: [{ hash: h('a'), size: null, pieces: [] }] },
      { pieceSize: PIECE_SIZE, blocks: [good], more: 1 },
    ]) {
      expect(() => parsePieceHashResponse(body, asked), JSON.stringify(body)).toThrow(ValidationError);
    }
  });

  it('checks requests: 1 to 64 distinct hashes', () => {
    expect(parsePieceHashRequest({ hashes: [h('a'), h('b')] })).toEqual({ hashes: [h('a'), h('b')] });
    for (const body of [{ hashes: [] }, { hashes: [h('a'), h('a')] }, { hashes: ['A'.repeat(64)] }, { hashes: Array.from({ length: 65 }, (_, i) => i.toString(16).padStart(64, '0')) }]) {
      expect(() => parsePieceHashRequest(body)).toThrow(ValidationError);
    }
  });
});
