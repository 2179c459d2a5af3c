// Runs inside a test network namespace (see netns.ts): accepts TCP on loopback and pipes
// each connection to a target address (the host end of the namespace's veth).
// Usage: node tcp-forwarder.mjs <listenPort> <targetHost> <targetPort>
// Prints "ready" once listening; exits on SIGTERM or when stdin closes (the parent is gone).
import net from 'node:net';

const [listenPort, targetHost, targetPort] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4])];
if (!Number.isInteger(listenPort) || !targetHost || !Number.isInteger(targetPort)) {
  console.error('usage: tcp-forwarder.mjs <listenPort> <targetHost> <targetPort>');
  process.exit(2);
}

const sockets = new Set();

function track(socket) {
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
}

function onConnection(client) {
  track(client);
  client.setNoDelay(true);
  const upstream = net.connect({ host: targetHost, port: targetPort });
  track(upstream);
  upstream.setNoDelay(true);
  client.pipe(upstream);
  upstream.pipe(client);
  const fail = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', fail);
  upstream.on('error', fail);
  // A half-close travels through: pipe() ends the other side's writable on 'end'. A clean
  // close must not destroy the other side: it may still hold bytes it has not flushed
  // (destroying it here once cut the last 18 KB off a 512 MiB transfer). end() flushes first.
  client.on('close', (hadError) => (hadError ? upstream.destroy() : upstream.end()));
  upstream.on('close', (hadError) => (hadError ? client.destroy() : client.end()));
}

const servers = [];
async function listen(host, required) {
  const server = net.createServer({ noDelay: true }, onConnection);
  try {
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port: listenPort }, resolve);
    });
    servers.push(server);
  } catch (error) {
    if (required) throw error;
  }
}

await listen('127.0.0.1', true);
await listen('::1', false); // Chromium may try [::1] first for localhost.
process.stdout.write('ready\n');

function shutdown() {
  for (const server of servers) server.close();
  for (const socket of sockets) socket.destroy();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
// The parent holds our stdin open; when it goes away (even killed), so do we.
process.stdin.on('end', shutdown).on('error', shutdown).resume();
