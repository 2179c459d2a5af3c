import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  LAN_ADVERT_MAX_BYTES,
  LAN_ADVERT_MAX_ENTRIES,
  LanAdvertError,
  MAX_CURSOR,
  decodeLanAdvert,
  encodeLanAdvert,
  lanAdvertEpoch,
  type LanAdvertDatagram,
  type NamespaceId,
} from '../../src/protocol/index.ts';
import { AdvertKeyring, advertTag, deriveAdvertKey } from '../../src/lan/discovery/index.ts';
import { LanAdvertListener, type LanPeerAdvert } from '../../src/lan/discovery/index.ts';
import { WorkBudget } from '../../src/lan/discovery/work-budget.ts';

const NS_A = 'nsAAAAAAAAAAAAAAAAAAAA' as NamespaceId;
const NS_B = 'nsBBBBBBBBBBBBBBBBBBBB' as NamespaceId;
const KEY_A = new Uint8Array(randomBytes(32));
const KEY_B = new Uint8Array(randomBytes(32));
const NOW = 1_750_000_000_000;

function header(overrides: Partial<LanAdvertDatagram> = {}): Omit<LanAdvertDatagram, 'entries'> {
  return { peerId: Uint8Array.from({ length: 16 }, (_, i) => i + 1), tcpPort: 17600, epoch: lanAdvertEpoch(NOW), sequence: 7, ...overrides };
}

/** An honest advert for the given namespaces' keys and cursors. */
function signed(entries: { lanKey: Uint8Array; cursor: number }[], overrides: Partial<LanAdvertDatagram> = {}): Uint8Array {
  const h = header(overrides);
  return encodeLanAdvert({ ...h, entries: entries.map(({ lanKey, cursor }) => ({ tag: advertTag(deriveAdvertKey(lanKey), h, cursor), cursor })) });
}

function reasonOf(bytes: Uint8Array): string {
  try {
    decodeLanAdvert(bytes);
  } catch (err) {
    expect(err).toBeInstanceOf(LanAdvertError);
    return (err as LanAdvertError).reason;
  }
  throw new Error('decoded');
}

describe('LAN advert codec', () => {
  it('round-trips every field, at the limits too', () => {
    const advert: LanAdvertDatagram = {
      ...header({ tcpPort: 65535, epoch: 0xffff_ffff, sequence: 0xffff_ffff }),
      entries: Array.from({ length: LAN_ADVERT_MAX_ENTRIES }, (_, i) => ({ tag: new Uint8Array(randomBytes(16)), cursor: i === 0 ? MAX_CURSOR : i * 1_000_003 })),
    };
    const bytes = encodeLanAdvert(advert);
    expect(bytes.length).toBe(33 + 24 * 32);
    expect(bytes.length).toBeLessThanOrEqual(LAN_ADVERT_MAX_BYTES);
    expect(decodeLanAdvert(bytes)).toEqual(advert);
  });

  it('lays out the header as documented', () => {
    const bytes = encodeLanAdvert({ ...header({ tcpPort: 0x4480, epoch: 0x0380_0000, sequence: 1 }), entries: [{ tag: new Uint8Array(16).fill(0xaa), cursor: 0x1_0000_0002 }] });
    expect(Buffer.from(bytes).toString('hex')).toBe(
      '4e534c41' + '01' + '00' + '0102030405060708090a0b0c0d0e0f10' + '4480' + '03800000' + '00000001' + '01' + 'aa'.repeat(16) + '0000000100000002',
    );
  });

  it('refuses to encode out-of-range fields', () => {
    const entry = { tag: new Uint8Array(16), cursor: 1 };
    expect(() => encodeLanAdvert({ ...header({ tcpPort: 0 }), entries: [entry] })).toThrow(LanAdvertError);
    expect(() => encodeLanAdvert({ ...header({ sequence: 0 }), entries: [entry] })).toThrow(LanAdvertError);
    expect(() => encodeLanAdvert({ ...header({ peerId: new Uint8Array(15) }), entries: [entry] })).toThrow(LanAdvertError);
    expect(() => encodeLanAdvert({ ...header(), entries: [] })).toThrow(LanAdvertError);
    expect(() => encodeLanAdvert({ ...header(), entries: Array(33).fill(entry) })).toThrow(LanAdvertError);
    expect(() => encodeLanAdvert({ ...header(), entries: [{ tag: new Uint8Array(16), cursor: MAX_CURSOR + 1 }] })).toThrow(LanAdvertError);
    expect(() => encodeLanAdvert({ ...header(), entries: [{ tag: new Uint8Array(16), cursor: -1 }] })).toThrow(LanAdvertError);
    expect(() => encodeLanAdvert({ ...header(), entries: [{ tag: new Uint8Array(15), cursor: 1 }] })).toThrow(LanAdvertError);
  });

  const good = () => Buffer.from(signed([{ lanKey: KEY_A, cursor: 5 }, { lanKey: KEY_B, cursor: 9 }]));
  const edited = (edit: (b: Buffer) => Buffer | void) => {
    const bytes = good();
    return new Uint8Array(edit(bytes) ?? bytes);
  };

  it.each<[string, () => Uint8Array, string]>([
    ['empty', () => new Uint8Array(0), 'truncated'],
    ['three bytes', () => Uint8Array.of(0x4e, 0x53, 0x4c), 'truncated'],
    ['wrong magic', () => edited((b) => void (b[0] = 0x4f)), 'magic'],
    ['random garbage', () => Uint8Array.of(...Buffer.from('GET / HTTP/1.1\r\n\r\n')), 'magic'],
    ['version 2', () => edited((b) => void (b[4] = 2)), 'version'],
    ['version 0', () => edited((b) => void (b[4] = 0)), 'version'],
    ['magic and version only', () => good().subarray(0, 5), 'truncated'],
    ['a cut header', () => good().subarray(0, 32), 'truncated'],
    ['a flag set', () => edited((b) => void (b[5] = 1)), 'flags'],
    ['TCP port 0', () => edited((b) => void b.writeUInt16BE(0, 22)), 'port'],
    ['sequence 0', () => edited((b) => void b.writeUInt32BE(0, 28)), 'sequence'],
    ['count 0', () => edited((b) => void (b[32] = 0)), 'count'],
    ['count 33', () => edited((b) => void (b[32] = 33)), 'count'],
    ['count above the entries present', () => edited((b) => void (b[32] = 3)), 'truncated'],
    ['a cut entry', () => good().subarray(0, good().length - 1), 'truncated'],
    ['a trailing byte', () => edited((b) => Buffer.concat([b, Buffer.of(0)])), 'length'],
    ['count below the entries present', () => edited((b) => void (b[32] = 1)), 'length'],
    ['a cursor above 2^53-1', () => edited((b) => void b.writeUInt32BE(0x0020_0000, 33 + 16)), 'cursor'],
    ['a cursor of 2^64-1', () => edited((b) => void b.fill(0xff, 33 + 16, 33 + 24)), 'cursor'],
    ['1,201 bytes', () => new Uint8Array(1201), 'oversized'],
    ['64 KiB of a valid prefix', () => edited((b) => Buffer.concat([b, Buffer.alloc(65_000)])), 'oversized'],
  ])('refuses %s (%s)', (_label, make, reason) => {
    expect(reasonOf(make())).toBe(reason);
  });

  it('refuses what is not bytes', () => {
    expect(() => decodeLanAdvert('NSLA' as unknown as Uint8Array)).toThrow(LanAdvertError);
  });

  it('decodes a view into a larger buffer without reading outside it', () => {
    const bytes = good();
    const framed = Buffer.concat([Buffer.from('xxxx'), bytes, Buffer.from('yyyy')]);
    expect(decodeLanAdvert(framed.subarray(4, 4 + bytes.length))).toEqual(decodeLanAdvert(bytes));
  });
});

describe('LAN advert tags', () => {
  const keyring = (...keys: [NamespaceId, Uint8Array][]) => {
    const ring = new AdvertKeyring();
    for (const [ns, key] of keys) ring.set(ns, key);
    return ring;
  };
  const matches = (ring: AdvertKeyring, bytes: Uint8Array) => {
    const advert = decodeLanAdvert(bytes);
    return advert.entries.map((e) => ring.match(advert, e.cursor, e.tag));
  };

  it('lets a member match its namespace and no other', () => {
    const bytes = signed([{ lanKey: KEY_A, cursor: 5 }, { lanKey: KEY_B, cursor: 9 }]);
    expect(matches(keyring([NS_A, KEY_A]), bytes)).toEqual([NS_A, null]);
    expect(matches(keyring([NS_A, KEY_A], [NS_B, KEY_B]), bytes)).toEqual([NS_A, NS_B]);
  });

  it('tells a stranger without the key nothing: no key of its own matches, and tags change every datagram', () => {
    const stranger = keyring([NS_A, new Uint8Array(randomBytes(32))], [NS_B, new Uint8Array(32)]);
    expect(matches(stranger, signed([{ lanKey: KEY_A, cursor: 5 }]))).toEqual([null]);
    // The same namespace and cursor under another sequence, epoch or peer: unlinkable tags.
    const tags = [header(), header({ sequence: 8 }), header({ epoch: header().epoch + 1 }), header({ peerId: new Uint8Array(16) })].map((h) =>
      Buffer.from(advertTag(deriveAdvertKey(KEY_A), h, 5)).toString('hex'),
    );
    expect(new Set(tags).size).toBe(tags.length);
  });

  it.each<[string, (b: Buffer) => void]>([
    ['the cursor', (b) => void (b[33 + 23] ^= 1)],
    ['the tag', (b) => void (b[33] ^= 0x80)],
    ['the TCP port', (b) => void b.writeUInt16BE(8080, 22)],
    ['the peer id', (b) => void (b[6] ^= 1)],
    ['the epoch', (b) => void b.writeUInt32BE(b.readUInt32BE(24) + 1, 24)],
    ['the sequence', (b) => void b.writeUInt32BE(0xffff_ffff, 28)],
  ])('refuses an advert whose %s was altered', (_label, alter) => {
    const bytes = Buffer.from(signed([{ lanKey: KEY_A, cursor: 5 }]));
    alter(bytes);
    expect(matches(keyring([NS_A, KEY_A]), bytes)).toEqual([null]);
  });

  it('refuses a tag forged with another key, and the key of one namespace for another', () => {
    expect(matches(keyring([NS_A, KEY_A]), signed([{ lanKey: new Uint8Array(randomBytes(32)), cursor: 5 }]))).toEqual([null]);
    expect(matches(keyring([NS_B, KEY_B]), signed([{ lanKey: KEY_A, cursor: 5 }]))).toEqual([null]);
  });

  it('matches the known-answer vector of docs/protocol.md', () => {
    const lanKey = Uint8Array.from({ length: 32 }, (_, i) => i);
    const h = { peerId: Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i), tcpPort: 17600, epoch: 58_333_333, sequence: 1 };
    const tag = advertTag(deriveAdvertKey(lanKey), h, 42);
    expect(Buffer.from(deriveAdvertKey(lanKey).export()).toString('hex')).toBe('2667385599e8ab001259f856db4443e4c2d7d405145eced7dd0dba3d42061909');
    expect(Buffer.from(tag).toString('hex')).toBe('c0a98334accfb8a347685f31b4830773');
    expect(Buffer.from(encodeLanAdvert({ ...h, entries: [{ tag, cursor: 42 }] })).toString('hex')).toBe(
      '4e534c41' + '01' + '00' + 'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf' + '44c0' + '037a1895' + '00000001' + '01' + 'c0a98334accfb8a347685f31b4830773' + '000000000000002a',
    );
  });

  it('derives advert keys from LAN keys of exactly 32 bytes', () => {
    expect(() => deriveAdvertKey(new Uint8Array(31))).toThrow(TypeError);
  });
});

describe('LanAdvertListener checks (without a socket)', () => {
  function listener(now = () => NOW) {
    const heard: LanPeerAdvert[] = [];
    const l = new LanAdvertListener({ onAdvert: (a) => heard.push(a), now, ownPeerId: new Uint8Array(16).fill(9) });
    l.setNamespace(NS_A, KEY_A);
    return { l, heard };
  }
  const from = { address: '10.0.0.7' };

  it('accepts an honest advert once per sequence, counts every drop by reason', () => {
    const { l, heard } = listener();
    const honest = signed([{ lanKey: KEY_A, cursor: 5 }, { lanKey: KEY_B, cursor: 9 }]);
    l.receive(honest, from);
    expect(heard).toEqual([{ peerId: '0102030405060708090a0b0c0d0e0f10', address: '10.0.0.7', tcpPort: 17600, ns: NS_A, cursor: 5, at: NOW }]);
    l.receive(honest, from); // replay
    l.receive(signed([{ lanKey: KEY_A, cursor: 4 }], { sequence: 6 }), from); // older, reordered
    l.receive(signed([{ lanKey: KEY_B, cursor: 9 }], { sequence: 8 }), from); // not ours
    l.receive(signed([{ lanKey: KEY_A, cursor: 5 }], { sequence: 9, epoch: header().epoch - 2 }), from);
    l.receive(signed([{ lanKey: KEY_A, cursor: 5 }], { sequence: 9, epoch: header().epoch + 2 }), from);
    l.receive(signed([{ lanKey: KEY_A, cursor: 5 }], { peerId: new Uint8Array(16).fill(9) }), from);
    l.receive(new Uint8Array(2000), from);
    l.receive(Uint8Array.of(1, 2, 3), from);
    expect(heard).toHaveLength(1);
    // Within the epoch window either side, a newer sequence is heard.
    l.receive(signed([{ lanKey: KEY_A, cursor: 6 }], { sequence: 10, epoch: header().epoch + 1 }), from);
    l.receive(signed([{ lanKey: KEY_A, cursor: 7 }], { sequence: 11, epoch: header().epoch - 1 }), from);
    expect(heard.map((a) => a.cursor)).toEqual([5, 6, 7]);
    expect(l.counters()).toEqual({ accepted: 3, replay: 2, unknown_tag: 1, stale: 2, own: 1, oversized: 1, malformed: 1, rate_limited: 0, table_full: 0 });
  });

  it('does not let a forged, higher sequence silence the honest peer', () => {
    const { l, heard } = listener();
    const forged = Buffer.from(signed([{ lanKey: KEY_A, cursor: 5 }], { sequence: 1 }));
    forged.writeUInt32BE(0xffff_fff0, 28);
    l.receive(forged, from);
    l.receive(signed([{ lanKey: KEY_A, cursor: 5 }], { sequence: 2 }), from);
    expect(heard.map((a) => a.cursor)).toEqual([5]);
    expect(l.counters()).toMatchObject({ unknown_tag: 1, accepted: 1 });
  });

  it('stops checking tags when the budget per second is spent, and counts the datagrams refused', () => {
    const heard: LanPeerAdvert[] = [];
    const l = new LanAdvertListener({ onAdvert: (a) => heard.push(a), now: () => NOW, tagChecksPerSecond: 3 });
    l.setNamespace(NS_A, KEY_A);
    for (let sequence = 1; sequence <= 10; sequence++) l.receive(signed([{ lanKey: KEY_A, cursor: sequence }], { sequence }), from);
    // A burst of 3 checks, then a trickle of 3 a second: the machine running this test may let one more through.
    expect(heard.length).toBeGreaterThanOrEqual(3);
    expect(heard.length).toBeLessThan(10);
    expect(l.counters().rate_limited).toBe(10 - heard.length);
  });

  it('forgets a peer unheard for 90 s', () => {
    let now = NOW;
    const expired: LanPeerAdvert[] = [];
    const l = new LanAdvertListener({ onAdvert: () => {}, onExpired: (a) => expired.push(a), now: () => now });
    l.setNamespace(NS_A, KEY_A);
    l.receive(signed([{ lanKey: KEY_A, cursor: 5 }]), from);
    now += 89_000;
    l.sweep();
    expect(l.peers()).toHaveLength(1);
    now += 1_000;
    l.sweep();
    expect(l.peers()).toEqual([]);
    expect(expired.map((a) => a.ns)).toEqual([NS_A]);
  });
});

describe('WorkBudget', () => {
  it('allows a burst, then refills at its rate up to the burst', () => {
    let now = 0;
    const budget = new WorkBudget(10, 20, () => now);
    expect(budget.take(20)).toBe(true);
    expect(budget.take(1)).toBe(false);
    now += 500;
    expect(budget.take(5)).toBe(true);
    expect(budget.take(1)).toBe(false);
    now += 60_000;
    expect(budget.take(20)).toBe(true);
    expect(budget.take(1)).toBe(false);
  });
});
