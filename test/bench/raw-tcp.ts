import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Netns } from '../netns/netns.ts';
import { stopProcess } from '../netns/netns.ts';
import { median } from './report.ts';

/**
 * The ceiling for the LAN bridge's link: a bare TCP stream over the namespace's veth in the
 * direction the bridge pulls blocks (a LAN daemon inside the namespace sends, the server in
 * this process on the host end receives). Node inside the namespace writes `bytesPerTransfer`
 * bytes as fast as the socket drains; this process times them from the first byte received
 * to the sender's end. No TLS and no framing: what the link and the kernel allow.
 */

/** Sender, run inside a namespace (`node -e SCRIPT host port total`): connect, write the bytes with backpressure, end. */
export const TCP_SENDER_SCRIPT = `
const net = require('node:net');
const [host, port, total] = process.argv.slice(1).map((arg, i) => (i === 0 ? arg : Number(arg)));
const chunk = Buffer.alloc(1024 * 1024, 0x5a);
const socket = net.connect({ host, port }, () => {
  let sent = 0;
  const pump = () => {
    while (sent < total) {
      const piece = sent + chunk.length <= total ? chunk : chunk.subarray(0, total - sent);
      sent += piece.length;
      if (!socket.write(piece)) return void socket.once('drain', pump);
    }
    socket.end();
  };
  pump();
});
socket.on('error', (error) => { console.error(error.message); process.exit(1); });
socket.on('close', () => process.exit(0));
`;

/** A transfer that has not finished after this is stuck (the veth moves hundreds of MB/s). */
const STALL_MS = 60_000;

export interface RawTcpResult {
  /** Median of the transfers, MB/s (1e6 bytes). */
  mbps: number;
  /** The best transfer, MB/s. */
  bestMbps: number;
  samples: number[];
  bytesPerTransfer: number;
}

export async function measureRawTcp(ns: Netns, bytesPerTransfer: number, transfers = 3): Promise<RawTcpResult> {
  const samples: number[] = [];
  for (let i = 0; i < transfers; i++) samples.push(await transferOnce(ns, bytesPerTransfer));
  return { mbps: median(samples), bestMbps: Math.max(...samples), samples, bytesPerTransfer };
}

/** One transfer namespace → host; resolves with MB/s. */
async function transferOnce(ns: Netns, total: number): Promise<number> {
  let server: Server | undefined;
  const received = new Promise<number>((resolve, reject) => {
    server = createServer((socket: Socket) => {
      let bytes = 0;
      let first = 0;
      socket.on('data', (data: Buffer) => {
        if (bytes === 0) first = performance.now();
        bytes += data.length;
      });
      socket.on('end', () => {
        const seconds = (performance.now() - first) / 1000;
        if (bytes !== total) reject(new Error(`raw TCP: received ${bytes} of ${total} bytes`));
        else resolve(bytes / 1e6 / seconds);
      });
      socket.on('error', reject);
    });
  });
  // Raced against the sender's failure below; a late rejection after that is of no interest.
  received.catch(() => undefined);
  await new Promise<void>((resolve, reject) => {
    server!.once('error', reject);
    server!.listen({ host: ns.hostAddress, port: 0 }, () => resolve());
  });
  const port = (server!.address() as AddressInfo).port;
  const sender = ns.spawn(process.execPath, ['-e', TCP_SENDER_SCRIPT, ns.hostAddress, String(port), String(total)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let senderErrors = '';
  sender.stderr!.on('data', (chunk: Buffer) => (senderErrors += chunk.toString()));
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const failed = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`raw TCP: no complete transfer within ${STALL_MS / 1000} s`)), STALL_MS);
      sender.on('exit', (code) => {
        if (code !== 0) reject(new Error(`raw TCP sender exited with ${code}: ${senderErrors.trim()}`));
      });
    });
    return await Promise.race([received, failed]);
  } finally {
    clearTimeout(timer);
    await stopProcess(sender).catch(() => undefined);
    await new Promise<void>((resolve) => {
      server!.close(() => resolve());
    });
  }
}
