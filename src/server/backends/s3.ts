import type { Logger } from '../log.ts';
import type { BlockStore } from '../storage/block-store.ts';
import type { S3Settings } from './index.ts';

/** Blocks in S3-compatible storage (to be built: issue 6). */
export async function openS3BlockStore(_location: string, _settings: S3Settings, _logger: Logger): Promise<BlockStore> {
  throw new Error('BLOCK_STORE: S3 support is not built yet');
}
