import { createAdapter } from '@socket.io/redis-adapter';
import type { Logger } from '../log.ts';
import type { RedisClient } from '../relay/redis-calls.ts';

/** How often a stream of failed publishes is logged while Redis is away. */
const FAILURE_LOG_INTERVAL_MS = 10_000;

/**
 * The socket.io Redis (pub/sub) adapter over two node-redis clients: room broadcasts of one
 * instance reach the sockets of every other instance. Channels start with `key`.
 */
export function createRelayAdapter(publisher: RedisClient, subscriber: RedisClient, key: string, logger: Logger): ReturnType<typeof createAdapter> {
  const onFailure = failureLog(logger);
  return createAdapter(guarded(publisher, onFailure), guarded(subscriber, onFailure), { key });
}

/**
 * The part of a node-redis client that the adapter calls, with every command's failure
 * caught. The adapter fires publishes and subscriptions without handling their promises;
 * while Redis is down (or after close) each would reject unhandled and end the process.
 * A broadcast that fails this way still reaches this instance's own sockets.
 */
function guarded(client: RedisClient, onFailure: (operation: string, err: unknown) => void) {
  const guard = (operation: string, promise: Promise<unknown>) => promise.catch((err: unknown) => onFailure(operation, err));
  const facade = {
    publish: (channel: string, message: string | Buffer) => guard('publish', client.publish(channel, message)),
    subscribe: (channels: string | string[], listener: (message: Buffer, channel: Buffer) => void, bufferMode: true) =>
      guard('subscribe', client.subscribe(channels, listener, bufferMode)),
    unsubscribe: (channels: string | string[], listener: (message: Buffer, channel: Buffer) => void, bufferMode: true) =>
      guard('unsubscribe', client.unsubscribe(channels, listener, bufferMode)),
    pSubscribe: (patterns: string | string[], listener: (message: Buffer, channel: Buffer) => void, bufferMode: true) =>
      guard('psubscribe', client.pSubscribe(patterns, listener, bufferMode)),
    pUnsubscribe: (patterns: string | string[], listener: (message: Buffer, channel: Buffer) => void, bufferMode: true) =>
      guard('punsubscribe', client.pUnsubscribe(patterns, listener, bufferMode)),
    // Present so the adapter recognises a node-redis client; sharded pub/sub is not used.
    sSubscribe: (channels: string | string[], listener: (message: Buffer, channel: Buffer) => void, bufferMode: true) =>
      guard('ssubscribe', client.sSubscribe(channels, listener, bufferMode)),
    // PUBSUB NUMSUB (server counts): awaited by the adapter's callers, so left to reject.
    sendCommand: (args: string[]) => client.sendCommand(args),
    on: (event: string, listener: (...args: any[]) => void) => {
      client.on(event, listener);
      return facade;
    },
    off: (event: string, listener: (...args: any[]) => void) => {
      client.off(event, listener);
      return facade;
    },
    listenerCount: (event: string) => client.listenerCount(event),
  };
  return facade;
}

/** Logs the first failure at once and then at most one line per interval, with how many were left out. */
function failureLog(logger: Logger): (operation: string, err: unknown) => void {
  let lastLogged = 0;
  let suppressed = 0;
  return (operation, err) => {
    const now = Date.now();
    if (now - lastLogged < FAILURE_LOG_INTERVAL_MS) {
      suppressed++;
      return;
    }
    logger.warn('relay broadcast to other instances failed', { operation, err: err instanceof Error ? err.message : String(err), suppressed });
    lastLogged = now;
    suppressed = 0;
  };
}
