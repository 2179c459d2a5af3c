import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../support/until.ts';
import { encodeStreamMessage } from '../../src/protocol/lan-stream.ts';
import { ReusedReadBuffer, SocketFrameChannel } from '../../src/lan/tcp/socket-channel.ts';

/**
 * A channel whose socket reads into one reused buffer (`onread`, as a dialled LAN link does)
 * must hand out messages that stay intact after later reads overwrite that buffer.
 */
describe('SocketFrameChannel over a socket read into a reused buffer', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    while (cleanups.length > 0) cleanups.pop()!();
  });

  it('delivers every message intact: those read before it attached, and those kept while the buffer was read into again', async () => {
    const messages = Array.from({ length: 400 }, (_, i) => randomBytes(1 + ((i * 7919) % 20_000)));
    const wire = Buffer.concat(messages.map((message) => encodeStreamMessage(message)));
    // A third before the channel attaches (kept by the reader), the rest once the client says so
    // (read into the reused buffer again and again): many messages per read, some split across reads.
    const split = Math.floor(wire.length / 3);
    const server = net.createServer((socket) => {
      socket.write(wire.subarray(0, split));
      socket.once('data', () => socket.end(wire.subarray(split)));
    });
    cleanups.push(() => server.close());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    let early = 0;
    const reader = new ReusedReadBuffer();
    const countEarly = reader.onread.callback;
    reader.onread.callback = (bytesRead, buffer) => {
      early += bytesRead;
      return countEarly(bytesRead, buffer);
    };
    const socket = net.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, onread: reader.onread });
    cleanups.push(() => socket.destroy());
    await until(() => early === split);
    const channel = new SocketFrameChannel(socket, { reader });
    const received: Uint8Array[] = [];
    const all = new Promise<void>((resolve) => {
      channel.onmessage = (message) => {
        received.push(message);
        if (received.length === messages.length) resolve();
      };
    });
    socket.write('more');
    await all;
    expect(received.length).toBe(messages.length);
    received.forEach((message, i) => expect(Buffer.from(message).equals(messages[i])).toBe(true));
    // No message is a view of the reused buffer.
    expect(received.every((message) => message.buffer !== reader.onread.buffer.buffer)).toBe(true);
  });
});
