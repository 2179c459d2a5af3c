import { createHash } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCK_SIZE, PIECE_SIZE, parsePieceHashResponse, type BlockHash } from '../../src/protocol/index.ts';
import { BACKEND_CASES } from '../support/backend-cases.ts';
import { api, commitFile, createWorkspace, makeBlock, putBlock, startHarness, type Harness, type Member } from './helpers.ts';

/** POST /api/v1/ns/:ns/pieces on every back end: per-piece hashes, the same access rule as a block download. */

/** The expected list, computed here independently of the server. */
function piecesOf(bytes: Uint8Array): string[] {
  const out: string[] = [];
  for (let at = 0; at < bytes.length; at += PIECE_SIZE) {
    out.push(createHash('sha256').update(bytes.subarray(at, Math.min(bytes.length, at + PIECE_SIZE))).digest('hex'));
  }
  return out;
}

async function findFile(dir: string, name: string): Promise<string | null> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const found = await findFile(path, name);
      if (found) return found;
    } else if (entry.name === name) return path;
  }
  return null;
}

describe.each(BACKEND_CASES)('piece hashes on $name', (backendCase) => {
  let h: Harness;
  let m: Member;
  beforeAll(async () => {
    h = await startHarness({ backends: backendCase });
    m = await createWorkspace(h.url);
  });
  afterAll(async () => {
    await h.stop();
  });

  const pieces = (json: unknown, member = m, token = member.token) => api(h.url, 'POST', `/api/v1/ns/${member.ns}/pieces`, { token, json });

  it('gives each piece of referenced blocks, in request order, checked by the client validator', async () => {
    const full = makeBlock(MAX_BLOCK_SIZE);
    const odd = makeBlock(3 * PIECE_SIZE + 17);
    const tiny = makeBlock(5);
    await commitFile(h.url, m, 'big.bin', [full, odd]);
    await commitFile(h.url, m, 'tiny.txt', [tiny]);
    const asked = [odd.hash, full.hash, tiny.hash];
    const res = await pieces({ hashes: asked });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      pieceSize: PIECE_SIZE,
      blocks: [
        { hash: odd.hash, size: odd.bytes.length, pieces: piecesOf(odd.bytes) },
        { hash: full.hash, size: MAX_BLOCK_SIZE, pieces: piecesOf(full.bytes) },
        { hash: tiny.hash, size: 5, pieces: piecesOf(tiny.bytes) },
      ],
    });
    expect(res.body.blocks[1].pieces).toHaveLength(64);
    const parsed = parsePieceHashResponse(res.body, asked);
    expect(parsed.get(odd.hash)?.pieces).toHaveLength(4);
    // Asked again (now from the cache): the same answer.
    expect((await pieces({ hashes: [full.hash] })).body.blocks[0].pieces).toEqual(piecesOf(full.bytes));
  });

  it('answers size null for blocks the workspace does not reference, even when another workspace does', async () => {
    const other = await createWorkspace(h.url);
    const theirs = makeBlock(1000);
    await commitFile(h.url, other, 'secret', [theirs]);
    const uploadedOnly = makeBlock(2000);
    await putBlock(h.url, m.token, uploadedOnly);
    const unknown = '0'.repeat(64) as BlockHash;
    const res = await pieces({ hashes: [theirs.hash, uploadedOnly.hash, unknown] });
    expect(res.status).toBe(200);
    expect(res.body.blocks).toEqual([
      { hash: theirs.hash, size: null },
      { hash: uploadedOnly.hash, size: null },
      { hash: unknown, size: null },
    ]);
  });

  it('refuses other tokens, and hostile bodies with 4xx', async () => {
    const other = await createWorkspace(h.url);
    const block = makeBlock(100);
    await commitFile(h.url, m, 'x', [block]);
    expect((await pieces({ hashes: [block.hash] }, m, other.token)).status).toBe(403);
    expect((await pieces({ hashes: [block.hash] }, m, 'not-a-token')).status).toBe(401);
    expect((await api(h.url, 'POST', `/api/v1/ns/${m.ns}/pieces`, { json: { hashes: [block.hash] } })).status).toBe(401);
    for (const body of [
      {},
      { hashes: [] },
      { hashes: [block.hash, block.hash] },
      { hashes: [block.hash.toUpperCase()] },
      { hashes: ['../../etc/passwd'] },
      { hashes: Array.from({ length: 65 }, (_, i) => i.toString(16).padStart(64, '0')) },
      { hashes: [block.hash], extra: 1 },
      [block.hash],
      'x',
    ]) {
      const res = await pieces(body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
    }
    const wrongType = await api(h.url, 'POST', `/api/v1/ns/${m.ns}/pieces`, { token: m.token, body: JSON.stringify({ hashes: [block.hash] }) });
    expect(wrongType.status).toBe(415);
  });

  it.runIf(backendCase.blocks === 'files')('vouches for nothing when the stored bytes no longer match their hash', async () => {
    const block = makeBlock(2 * PIECE_SIZE);
    await commitFile(h.url, m, 'rotted', [block]);
    const path = await findFile(join(h.dataDir, 'blocks'), block.hash);
    expect(path).not.toBeNull();
    const rotten = Buffer.from(block.bytes);
    rotten[PIECE_SIZE + 1] ^= 0xff;
    await writeFile(path!, rotten);
    const res = await pieces({ hashes: [block.hash] });
    expect(res.status).toBe(200);
    expect(res.body.blocks).toEqual([{ hash: block.hash, size: null }]);
  });
});
