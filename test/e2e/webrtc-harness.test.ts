import { createReadStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Server as SocketIoServer } from 'socket.io';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsHarness } from '../netns/harness.ts';
import { isRoot } from '../netns/netns.ts';
import { createWorkspace } from './ui.ts';

/**
 * The network-namespace harness itself: the app served by the in-process server reaches
 * Chromium in the namespace as http://localhost:<port>, the test reads the server's metrics
 * in-process, and a websocket (socket.io) passes the forwarder. Skipped only when not root.
 */

const SOCKET_IO_CLIENT = fileURLToPath(new URL('../../node_modules/socket.io/client-dist/socket.io.min.js', import.meta.url));

describe.skipIf(!isRoot())('network-namespace e2e harness', () => {
  let harness: NetnsHarness;

  beforeAll(async () => {
    harness = await NetnsHarness.start();
  }, 180_000);

  afterAll(async () => {
    await harness?.close();
  }, 60_000);

  it('serves the app at http://localhost inside the namespace; metrics are read in-process', async () => {
    const server = await harness.startServer();
    expect(server.origin).toMatch(/^http:\/\/localhost:\d+$/);
    const context = await harness.newBrowser();
    const page = await context.newPage();
    page.on('pageerror', (error) => console.error('page error:', error.message));
    const { namespaceId } = await createWorkspace(page, server.origin, 'netns smoke');
    expect(namespaceId).toMatch(/^[A-Za-z0-9_-]{16,64}$/);
    expect(await page.evaluate(() => [isSecureContext, typeof crypto.subtle, typeof navigator.locks])).toEqual([true, 'object', 'object']);
    expect(server.server.metrics()).toMatchObject({ blockBytesServed: 0, blockRequestsServed: 0 });
    expect(await server.metrics()).toEqual(server.server.metrics());
    // The test process reaches the same server on the host end of the veth.
    const response = await fetch(`${server.hostUrl}/api/v1/metrics`);
    expect(response.ok).toBe(true);
  }, 120_000);

  it('a socket.io websocket from a page in the namespace reaches a server in the test process', async () => {
    // socket.io answers /socket.io/ itself, before this listener.
    const http = await harness.startHttpServer((req, res) => {
      if (req.url === '/') {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><script src="/client.js"></script>');
      } else if (req.url === '/client.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        createReadStream(SOCKET_IO_CLIENT).pipe(res);
      } else {
        res.writeHead(404).end();
      }
    });
    const io = new SocketIoServer(http.server, { serveClient: false });
    try {
      io.on('connection', (socket) => socket.on('echo', (value: string, ack: (v: string) => void) => ack(`${value} back`)));
      const page = await (await harness.newBrowser()).newPage();
      await page.goto(`${http.origin}/`);
      const answer = await page.evaluate(
        () =>
          new Promise<string>((resolve, reject) => {
            const socket = (window as unknown as { io: (url: string, o: object) => any }).io(location.origin, { transports: ['websocket'] });
            socket.on('connect_error', reject);
            socket.emit('echo', 'ping', (value: string) => {
              socket.close();
              resolve(value);
            });
          }),
      );
      expect(answer).toBe('ping back');
    } finally {
      // Not io.close(): it closes the HTTP server and waits for Chromium's keep-alive
      // connections; the harness closes the server (cutting connections) at teardown.
      io.disconnectSockets(true);
      io.engine.close();
    }
  }, 60_000);
});
