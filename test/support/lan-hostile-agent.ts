import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';
import tls from 'node:tls';
import { makePskIdentity, namespaceSecrets } from '../../src/lan/tcp/psk.ts';
import { lanTlsOptions } from '../../src/lan/tcp/tls-profile.ts';
import {
  MAX_STREAM_MESSAGE,
  StreamDecoder,
  decodeFrame,
  decodeLanAdvert,
  encodeFrame,
  encodeHello,
  encodeStreamMessage,
  isHelloMessage,
  type BlockHash,
  type NamespaceId,
} from '../../src/protocol/index.ts';

/**
 * A hostile host on a test's LAN, run as a child process inside the test's network
 * namespace and driven by JSON lines on stdin (one reply line each on stdout). Exits when
 * stdin closes.
 *
 *   {"id":1,"cmd":"capture","port":n,"peerId":hex}       start keeping the datagrams of that peer id heard on udp/port
 *   {"id":2,"cmd":"captured"}                            → {"datagrams":[hex…]} (oldest first)
 *   {"id":3,"cmd":"send","hex":…,"to":addr,"port":n}     one UDP datagram (broadcast allowed)
 *   {"id":4,"cmd":"tcp","host":…,"port":n,"from":addr,"attack":…,…}
 *       → {"handshake":"ok"|"failed","hello":bool,"closed":bool,"answers":["<request id>:nack:<reason>"|"<id>:data"…]}
 *
 * TCP attacks ("attack"): "stranger" (a PSK nobody holds), "member" (ns + lanKey hex,
 * hello as peerId hex, then "then": "oversize" | "garbage" | "requests" (with
 * "requests": [{ns, hash}]) | "wait"). The reply says whether the server hello came and
 * whether the server closed the connection (within waitMs, default 10 s).
 */

interface Command {
  id: number;
  cmd: 'capture' | 'captured' | 'send' | 'tcp';
  [field: string]: unknown;
}

let sender: Socket | null = null;
let sniffer: Socket | null = null;
const captured: string[] = [];

async function run(c: Command): Promise<Record<string, unknown>> {
  switch (c.cmd) {
    case 'capture': {
      const socket = createSocket({ type: 'udp4', reuseAddr: true });
      sniffer = socket;
      socket.on('message', (message) => {
        try {
          if (Buffer.from(decodeLanAdvert(message).peerId).toString('hex') === c.peerId) captured.push(message.toString('hex'));
        } catch {
          // someone else's garbage
        }
      });
      socket.bind(c.port as number);
      await once(socket, 'listening');
      return {};
    }
    case 'captured':
      return { datagrams: [...captured] };
    case 'send': {
      if (!sender) {
        sender = createSocket({ type: 'udp4' });
        sender.bind(0);
        await once(sender, 'listening');
        sender.setBroadcast(true);
      }
      const socket = sender;
      await new Promise<void>((resolve, reject) =>
        socket.send(Buffer.from(c.hex as string, 'hex'), c.port as number, c.to as string, (error) => (error ? reject(error) : resolve())),
      );
      return {};
    }
    case 'tcp':
      return attack(c);
  }
}

interface Answer {
  id: number;
  answer: string;
}

async function attack(c: Command): Promise<Record<string, unknown>> {
  let psk: Uint8Array;
  let identity: string;
  if (c.attack === 'stranger') {
    psk = randomBytes(32);
    identity = makePskIdentity(randomBytes(32));
  } else {
    const secrets = namespaceSecrets(c.ns as NamespaceId, Buffer.from(c.lanKey as string, 'hex'));
    psk = secrets.psk;
    identity = makePskIdentity(secrets.identityKey);
  }
  const tcp = net.connect({ host: c.host as string, port: c.port as number, localAddress: c.from as string | undefined });
  tcp.on('error', () => {});
  const socket = tls.connect({ ...lanTlsOptions, socket: tcp, checkServerIdentity: () => undefined, pskCallback: () => ({ psk, identity }) });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const secured = await Promise.race([new Promise<boolean>((resolve) => socket.once('secureConnect', () => resolve(true))), closed.then(() => false)]);
  if (!secured) return { handshake: 'failed', hello: false, closed: true, answers: [] };

  const decoder = new StreamDecoder();
  const answers: Answer[] = [];
  let hello = false;
  let onMessage: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    let messages: Uint8Array[];
    try {
      messages = decoder.push(chunk);
    } catch {
      return socket.destroy();
    }
    for (const message of messages) {
      if (isHelloMessage(message)) hello = true;
      else {
        let frame;
        try {
          frame = decodeFrame(message);
        } catch {
          return socket.destroy();
        }
        if (frame.type === 'nack') answers.push({ id: frame.id, answer: `nack:${frame.reason}` });
        else if (frame.type === 'end') answers.push({ id: frame.id, answer: 'data' });
        else if (frame.type === 'data' && !answers.some((a) => a.id === frame.id && a.answer === 'data-started')) answers.push({ id: frame.id, answer: 'data-started' });
      }
      onMessage?.();
    }
  });
  const waitFor = (test: () => boolean, ms: number) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => finish(false), ms);
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        onMessage = null;
        resolve(ok);
      };
      if (test()) return finish(true);
      onMessage = () => test() && finish(true);
      void closed.then(() => finish(test()));
    });

  socket.write(encodeStreamMessage(encodeHello({ peerId: Buffer.from(c.peerId as string, 'hex'), cursors: [{ ns: c.ns as NamespaceId, cursor: 0 }] })));
  await waitFor(() => hello, 10_000);
  const waitMs = (c.waitMs as number | undefined) ?? 10_000;
  switch (c.then) {
    case 'oversize': {
      const header = Buffer.alloc(4);
      header.writeUInt32BE(MAX_STREAM_MESSAGE + 1);
      socket.write(header);
      break;
    }
    case 'garbage':
      // Well framed, but no frame: version 9, type 200.
      socket.write(encodeStreamMessage(Uint8Array.from([9, 200, ...randomBytes(30)])));
      break;
    case 'requests': {
      const requests = c.requests as { ns: NamespaceId; hash: BlockHash }[];
      requests.forEach((request, i) => socket.write(encodeStreamMessage(encodeFrame({ type: 'request', id: i + 1, ns: request.ns, hash: request.hash }))));
      await waitFor(() => requests.every((_, i) => answers.some((a) => a.id === i + 1 && a.answer !== 'data-started')), waitMs);
      break;
    }
  }
  const wasClosed = await Promise.race([closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), c.then === 'requests' ? 0 : waitMs))]);
  socket.destroy();
  return { handshake: 'ok', hello, closed: wasClosed, answers: answers.map((a) => `${a.id}:${a.answer}`) };
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = JSON.parse(line) as Command;
  run(command).then(
    (reply) => process.stdout.write(`${JSON.stringify({ id: command.id, ...reply })}\n`),
    (error: Error) => process.stdout.write(`${JSON.stringify({ id: command.id, error: error.message })}\n`),
  );
});
lines.on('close', () => {
  sender?.close();
  sniffer?.close();
  process.exit(0);
});
process.stdout.write('ready\n');
