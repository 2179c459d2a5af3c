import { createAdapter } from '@socket.io/redis-adapter';
import type { Logger } from '../log.ts';
import type { RedisClient } from '../relay/redis-calls.ts';
import { throttledLog } from '../relay/throttled-log.ts';

/**
 * The socket.io Redis (pub/sub) adapter over two node-redis clients: room broadcasts of one
 * instance reach the sockets of every other instance. Channels start with `key`.
 */
export function createRelayAdapter(publisher: RedisClient, subscriber: RedisClient, key: string, logger: Logger): ReturnType<typeof createAdapter> {
  const log = throttledLog((msg, fields) => logger.warn(msg, fields));
  const onFailure = (operation: string, err: unknown) =>
    log(`relay ${operation} to other instances failed`, { err: err instanceof Error ? err.message : String(err) });
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
