import { createHash } from 'node:crypto';
import type { Sha256 } from '../../engine/types.ts';
import type { BlockHash } from '../../protocol/index.ts';

export function sha256Hex(bytes: Uint8Array): BlockHash {
  return createHash('sha256').update(bytes).digest('hex') as BlockHash;
}

/** The engine's Sha256 port on node:crypto. */
export const nodeSha256: Sha256 = async (bytes) => sha256Hex(bytes);
