import type { Logger } from '../log.ts';
import type { RelayBackend } from './index.ts';

/** The relay's shared state in Redis (to be built: issue 6). */
export async function openRedisRelay(_url: string, _logger: Logger): Promise<{ relay: RelayBackend; close(): Promise<void> }> {
  throw new Error('REDIS_URL: Redis support is not built yet');
}
