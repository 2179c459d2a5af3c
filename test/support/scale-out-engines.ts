import type { BackendConfig } from '../../src/server/backends/index.ts';
import { createTestSchema } from './pg-test-db.ts';
import { SHARED_REDIS_URL, deleteKeysUnder, openTestClient, relayRedisUrl, uniquePrefix } from './redis-keys.ts';

/**
 * PostgreSQL and Redis for a multi-instance test: a schema of its own on the shared
 * PostgreSQL and a key prefix of its own on the shared Redis, both removed by teardown().
 */
export interface ScaleOutEngines {
  backends: BackendConfig;
  teardown(): Promise<void>;
}

export async function provisionScaleOutEngines(label = 'scaled'): Promise<ScaleOutEngines> {
  const schema = await createTestSchema(label);
  const prefix = uniquePrefix(label);
  return {
    backends: { databaseUrl: schema.databaseUrl, redisUrl: relayRedisUrl(SHARED_REDIS_URL, prefix) },
    async teardown() {
      await schema.drop();
      const client = await openTestClient();
      try {
        await deleteKeysUnder(client, prefix);
      } finally {
        await client.quit();
      }
    },
  };
}
