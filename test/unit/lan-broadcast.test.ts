import type { NetworkInterfaceInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { broadcastAddresses } from '../../src/lan/broadcast-addresses.ts';

const v4 = (address: string, netmask: string, internal = false): NetworkInterfaceInfo => ({
  address,
  netmask,
  family: 'IPv4',
  mac: '00:00:00:00:00:00',
  internal,
  cidr: null,
});

describe('LAN broadcast addresses', () => {
  it('computes address | ~netmask for each IPv4 LAN interface, once each', () => {
    expect(
      broadcastAddresses({
        lo: [v4('127.0.0.1', '255.0.0.0', true)],
        eth0: [v4('192.168.1.20', '255.255.255.0'), { ...v4('fe80::1', 'ffff:ffff:ffff:ffff::'), family: 'IPv6', scopeid: 2 }],
        eth1: [v4('10.213.4.2', '255.255.255.252'), v4('10.213.4.1', '255.255.255.252')],
        wg0: [v4('10.9.0.5', '255.255.255.255')],
        p2p: [v4('10.8.0.4', '255.255.255.254')],
        big: [v4('172.20.3.4', '255.240.0.0')],
      }),
    ).toEqual(['192.168.1.255', '10.213.4.3', '172.31.255.255']);
  });

  it('finds nothing without a LAN interface', () => {
    expect(broadcastAddresses({ lo: [v4('127.0.0.1', '255.0.0.0', true)] })).toEqual([]);
  });
});
