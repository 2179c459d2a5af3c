import { TCP_SENDER_SCRIPT } from '../raw-tcp.ts';
import type { Netns } from '../../netns/netns.ts';
import { stopProcess } from '../../netns/netns.ts';

/**
 * The ceiling of the native-pair bench: a bare TCP stream over the same veth, sender in one
 * namespace, receiver in the other, no TLS, no framing, no disk. The receiver (inside its
 * namespace) times first byte → end and prints MB/s.
 */

const RECEIVER = `
const net = require('node:net');
const [host, total] = [process.argv[1], Number(process.argv[2])];
const server = net.createServer((socket) => {
  let bytes = 0;
  let first = 0;
  socket.on('data', (data) => {
    if (bytes === 0) first = performance.now();
    bytes += data.length;
  });
  socket.on('end', () => {
    if (bytes !== total) { console.error('received ' + bytes + ' of ' + total); process.exit(1); }
    console.log('mbps ' + (bytes / 1e6 / ((performance.now() - first) / 1000)));
    process.exit(0);
  });
});
server.listen({ host, port: 0 }, () => console.log('port ' + server.address().port));
`;

/** One transfer of `total` bytes from `senderNs` to `receiverAddress` in `receiverNs`; MB/s. */
export async function bareTcpOnce(senderNs: Netns, receiverNs: Netns, receiverAddress: string, total: number): Promise<number> {
  const receiver = receiverNs.spawn(process.execPath, ['-e', RECEIVER, receiverAddress, String(total)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  receiver.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  receiver.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => receiver.on('exit', resolve));
  const sender = { child: null as ReturnType<Netns['spawn']> | null };
  try {
    const deadline = performance.now() + 10_000;
    while (!/port (\d+)/.test(out)) {
      if (receiver.exitCode !== null || performance.now() > deadline) throw new Error(`bare TCP receiver did not start: ${err}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const port = /port (\d+)/.exec(out)![1];
    sender.child = senderNs.spawn(process.execPath, ['-e', TCP_SENDER_SCRIPT, receiverAddress, port, String(total)], { stdio: ['ignore', 'ignore', 'pipe'] });
    const timer = setTimeout(() => receiver.kill('SIGKILL'), 60_000);
    const code = await exited;
    clearTimeout(timer);
    const mbps = /mbps ([\d.]+)/.exec(out)?.[1];
    if (code !== 0 || !mbps) throw new Error(`bare TCP transfer failed (exit ${code}): ${err.trim()}`);
    return Number(mbps);
  } finally {
    await stopProcess(receiver).catch(() => undefined);
    if (sender.child) await stopProcess(sender.child).catch(() => undefined);
  }
}
