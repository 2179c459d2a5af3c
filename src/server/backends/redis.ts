import type { Logger } from '../log.ts';
import { RedisAdvertTable } from '../relay/redis-advert-table.ts';
import type { RedisClient } from '../relay/redis-calls.ts';
import { RedisPeerDirectory } from '../relay/redis-peer-directory.ts';
import type { RelayBackend } from './index.ts';
import { createRelayAdapter } from './redis-adapter.ts';
import { closeRedis, connectRedis, parseRedisLocation } from './redis-connection.ts';

/**
 * The relay's shared state in Redis: the advert table and the peer directory over one
 * command connection (which also publishes room broadcasts), and a second connection that
 * subscribes to the broadcasts of the other instances. Keys and channels start with the
 * URL's `?prefix=` (default "nearsync:").
 */
export async function openRedisRelay(url: string, logger: Logger): Promise<{ relay: RelayBackend; close(): Promise<void> }> {
  const location = parseRedisLocation(url);
  const clients: RedisClient[] = [];
  const closeClients = () => Promise.all(clients.map((client) => closeRedis(client)));
  try {
    const commands = await connectRedis(location, logger, { role: 'relay commands', offlineQueue: false });
    clients.push(commands);
    const subscriber = await connectRedis(location, logger, { role: 'relay subscriber', offlineQueue: true });
    clients.push(subscriber);

    const { prefix } = location;
    const advertTable = new RedisAdvertTable(commands, { prefix, logger });
    const peerDirectory = new RedisPeerDirectory(commands, { prefix, logger });
    const adapter = createRelayAdapter(commands, subscriber, `${prefix}socket.io`, logger);
    logger.info('relay state in redis', { redis: location.display, prefix });
    return {
      relay: { advertTable, peerDirectory, adapter },
      async close() {
        await peerDirectory.close();
        await closeClients();
      },
    };
  } catch (err) {
    await closeClients();
    throw err;
  }
}
