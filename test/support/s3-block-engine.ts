import type { BlockEngine } from './backend-cases.ts';
import { startS3TestServer } from './s3-test-server.ts';

/** S3BlockStore's key layout: `blocks/<first two hex digits>/<hash>`. */
const BLOCK_KEY = /^blocks\/([0-9a-f]{2})\/(\1[0-9a-f]{62})$/;

/**
 * Blocks in a bucket of their own, on an s3rver started for the harness and removed at
 * teardown. A single PutObject is visible whole or not at all, so nothing is ever partial.
 */
export const s3Blocks: BlockEngine = {
  name: 's3',
  async provision() {
    const s3 = await startS3TestServer();
    return {
      config: { blockStore: s3.location(), s3: s3.settings },
      async contents() {
        const blocks = (await s3.keys()).map((key) => BLOCK_KEY.exec(key)?.[2] ?? key);
        return { blocks: blocks.sort(), partial: [] };
      },
      teardown: () => s3.stop(),
    };
  },
};
