import { PIECE_SIZE, parsePieceHashRequest, type PieceHashResponse } from '../../protocol/index.ts';
import { requireMember } from '../auth.ts';
import type { Handler } from '../context.ts';
import { readJson } from '../http/json-body.ts';
import { sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';
import { mapBounded } from '../storage/bounded-map.ts';
import { StoredBlockCorruptError } from '../storage/piece-hashes.ts';

/**
 * POST /api/v1/ns/:ns/pieces {hashes} — the per-piece SHA-256 of blocks the namespace
 * references (docs/protocol.md): what a browser checks a peer's bytes against piece by piece.
 * Same rule as a block download: a member token of `:ns`, and only blocks its journal names;
 * any other hash is answered `size: null`, exactly like a block that is not stored.
 */
const pieces: Handler = async (ctx, deps) => {
  const ns = await requireMember(ctx.req, deps, ctx.params.ns);
  const { hashes } = parsePieceHashRequest(await readJson(ctx.req));
  const referenced = await deps.metadata.namespaceReferencedBlocks(ns, hashes);
  const blocks = await mapBounded(hashes, 4, async (hash) => {
    if (!referenced.has(hash)) return { hash, size: null };
    try {
      return (await deps.pieceHashes.get(hash)) ?? { hash, size: null };
    } catch (error) {
      if (!(error instanceof StoredBlockCorruptError)) throw error;
      // Vouch for nothing the store cannot prove; the client fetches the block whole instead.
      deps.logger.error('piece hashes: stored block does not match its hash', { hash });
      return { hash, size: null };
    }
  });
  const body: PieceHashResponse = { pieceSize: PIECE_SIZE, blocks };
  ctx.stats.bytesOut = sendJson(ctx.res, 200, body);
};

export function pieceRoutes(router: Router<Handler>): void {
  router.add('POST', '/api/v1/ns/:ns/pieces', pieces);
}
