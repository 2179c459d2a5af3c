import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { assertNetnsSupport, type Netns } from './netns.ts';

const execFileAsync = promisify(execFile);

/**
 * A veth pair straight between two test namespaces: what two machines on one office switch
 * look like. Both ends are created inside their namespaces (never in the host's), so they go
 * when the namespaces go, and nothing routes onwards: each namespace keeps only its own
 * default route to the host end of its own veth, where nothing is forwarded.
 *
 * The link's /30 is 10.214.0.0/30 in every pair: the two namespaces see no other 10.214
 * route, so concurrent runs (each with their own namespaces) cannot clash.
 */
export interface NamespaceLink {
  readonly aInterface: string;
  readonly bInterface: string;
  readonly aAddress: string;
  readonly bAddress: string;
  /** The link's broadcast address: LAN adverts sent here reach only the other namespace. */
  readonly broadcastAddress: string;
}

let linkCounter = 0;

export async function linkNamespaces(a: Netns, b: Netns): Promise<NamespaceLink> {
  const ip = assertNetnsSupport();
  const n = linkCounter++;
  // Short names (15 characters at most); unique per process, and only ever inside the two namespaces.
  const aInterface = `nsl${process.pid % 100_000}a${n}`;
  const bInterface = `nsl${process.pid % 100_000}b${n}`;
  const link = { aInterface, bInterface, aAddress: '10.214.0.1', bAddress: '10.214.0.2', broadcastAddress: '10.214.0.3' };
  const run = async (args: string[]) => {
    try {
      await execFileAsync(ip, args);
    } catch (error) {
      const e = error as { stderr?: string; message: string };
      throw new Error(`${ip} ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`);
    }
  };
  await run(['link', 'add', aInterface, 'netns', a.name, 'type', 'veth', 'peer', 'name', bInterface, 'netns', b.name]);
  for (const [ns, name, address] of [
    [a, aInterface, link.aAddress],
    [b, bInterface, link.bAddress],
  ] as const) {
    await run(['netns', 'exec', ns.name, 'sh', '-c', `echo 1 > /proc/sys/net/ipv6/conf/${name}/disable_ipv6`]).catch(() => undefined);
    await run(['-n', ns.name, 'addr', 'add', `${address}/30`, 'broadcast', link.broadcastAddress, 'dev', name]);
    await run(['-n', ns.name, 'link', 'set', name, 'up']);
  }
  return link;
}
