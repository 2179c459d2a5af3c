import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { NamespaceId } from '../../src/protocol/index.ts';
import { LanAdvertiser } from '../../src/lan/discovery/index.ts';

/**
 * A LAN peer's UDP side, run in a child process inside a test's network namespace and driven
 * by JSON lines on stdin (one reply line each on stdout): honest advertisers, and a raw
 * socket that sends whatever bytes the test hands it (garbage, replays, forgeries). Exits
 * when stdin closes, so nothing outlives the test.
 *
 *   {"id":1,"cmd":"advertise","ns":…,"lanKey":hex,"cursor":n,"tcpPort":n,"to":addr,"port":n,"from":addr}
 *     → {"id":1,"peerId":hex}
 *   {"id":2,"cmd":"cursor","peerId":hex,"ns":…,"cursor":n}  → {"id":2}
 *   {"id":3,"cmd":"send","hex":…,"to":addr,"port":n,"from":addr} → {"id":3}
 */

interface Command {
  id: number;
  cmd: 'advertise' | 'cursor' | 'send';
  [field: string]: unknown;
}

const advertisers = new Map<string, LanAdvertiser>();
const raw = createSocket({ type: 'udp4' });
let rawBound: Promise<unknown> | null = null;

async function run(c: Command): Promise<Record<string, unknown>> {
  switch (c.cmd) {
    case 'advertise': {
      const advertiser = new LanAdvertiser({ tcpPort: c.tcpPort as number, broadcastAddress: c.to as string, port: c.port as number, bindAddress: c.from as string });
      advertiser.setNamespace(c.ns as NamespaceId, Buffer.from(c.lanKey as string, 'hex'), c.cursor as number);
      await advertiser.start();
      const peerId = Buffer.from(advertiser.peerId).toString('hex');
      advertisers.set(peerId, advertiser);
      return { peerId };
    }
    case 'cursor': {
      advertisers.get(c.peerId as string)!.setCursor(c.ns as NamespaceId, c.cursor as number);
      return {};
    }
    case 'send': {
      if (!rawBound) {
        raw.bind(0, c.from as string);
        rawBound = once(raw, 'listening').then(() => raw.setBroadcast(true));
      }
      await rawBound;
      await new Promise<void>((resolve, reject) => raw.send(Buffer.from(c.hex as string, 'hex'), c.port as number, c.to as string, (err) => (err ? reject(err) : resolve())));
      return {};
    }
  }
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const command = JSON.parse(line) as Command;
  run(command).then(
    (reply) => process.stdout.write(`${JSON.stringify({ id: command.id, ...reply })}\n`),
    (err: Error) => process.stdout.write(`${JSON.stringify({ id: command.id, error: err.message })}\n`),
  );
});
lines.on('close', async () => {
  for (const advertiser of advertisers.values()) await advertiser.close();
  raw.close();
  process.exit(0);
});
process.stdout.write('ready\n');
