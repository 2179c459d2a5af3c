import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';

/**
 * The IPv4 broadcast address of every non-internal interface (address | ~netmask), without
 * duplicates. Point-to-point /31 and /32 networks have no broadcast address and are left out.
 */
export function broadcastAddresses(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string[] {
  const found = new Set<string>();
  for (const infos of Object.values(interfaces)) {
    for (const info of infos ?? []) {
      if (info.family !== 'IPv4' || info.internal) continue;
      const address = ipv4ToNumber(info.address);
      const mask = ipv4ToNumber(info.netmask);
      if (address === null || mask === null || (mask >>> 0) >= 0xfffffffe) continue;
      found.add(numberToIpv4((address | ~mask) >>> 0));
    }
  }
  return [...found];
}

function ipv4ToNumber(text: string): number | null {
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((part) => !Number.isInteger(part) || part < 0 || part > 255)) return null;
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

function numberToIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff].join('.');
}
