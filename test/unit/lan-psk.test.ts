import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_KEYRING_NAMESPACES, PskKeyring, makePskIdentity, namespaceSecrets } from '../../src/lan/tcp/psk.ts';
import type { NamespaceId } from '../../src/protocol/index.ts';

const NS = 'nsnsnsnsnsnsnsnsnsnsns' as NamespaceId;
const OTHER = 'otherotherotherother12' as NamespaceId;

describe('LAN PSK and identity', () => {
  // Computed independently (Python hmac/hashlib, RFC 5869 HKDF with an empty salt); docs/protocol.md's example.
  const lanKey = Uint8Array.from({ length: 32 }, (_, i) => i);
  const nonce = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);

  it('derives the documented values', () => {
    const secrets = namespaceSecrets(NS, lanKey);
    expect(secrets.psk.toString('hex')).toBe('8006739df1dfb92b5926013f5c708b43ddb2b1a82ed51a226ae7b82d8b388889');
    expect(secrets.identityKey.toString('hex')).toBe('cc9e17bc05d6e0a014e185d8d223726c777c2dc4e2ed65b3b83024094fae5f54');
    expect(makePskIdentity(secrets.identityKey, nonce)).toBe('a0a1a2a3a4a5a6a7a8a9aaabacadaeaf09f3581d1af522a8bca33492be6e0421');
  });

  it('makes a fresh identity per connection that names no namespace', () => {
    const secrets = namespaceSecrets(NS, lanKey);
    const a = makePskIdentity(secrets.identityKey);
    const b = makePskIdentity(secrets.identityKey);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(a).not.toBe(b);
    expect(a).not.toContain(Buffer.from(NS).toString('hex'));
  });

  it('refuses a LAN key that is not 32 bytes', () => {
    expect(() => namespaceSecrets(NS, new Uint8Array(31))).toThrow(RangeError);
  });

  it('finds the namespace whose key made an identity, and nothing for anything else', () => {
    const keyring = new PskKeyring();
    const nsKey = randomBytes(32);
    const otherKey = randomBytes(32);
    keyring.set(NS, nsKey);
    keyring.set(OTHER, otherKey);
    const ns = namespaceSecrets(NS, nsKey);
    const other = namespaceSecrets(OTHER, otherKey);
    expect(keyring.find(makePskIdentity(ns.identityKey))?.ns).toBe(NS);
    expect(keyring.find(makePskIdentity(other.identityKey))?.psk.equals(other.psk)).toBe(true);

    const stranger = namespaceSecrets(NS, randomBytes(32));
    const genuine = makePskIdentity(ns.identityKey);
    const flipped = genuine.slice(0, 63) + (genuine[63] === '0' ? '1' : '0');
    for (const identity of [
      makePskIdentity(stranger.identityKey),
      flipped,
      genuine.toUpperCase(),
      genuine.slice(0, 62),
      genuine + '00',
      '',
      'x'.repeat(64),
      42,
      null,
    ]) {
      expect(keyring.find(identity)).toBeNull();
    }

    keyring.delete(NS);
    expect(keyring.find(genuine)).toBeNull();
  });

  it('holds a bounded number of namespaces', () => {
    const keyring = new PskKeyring();
    for (let i = 0; i < MAX_KEYRING_NAMESPACES; i++) keyring.set(`namespace-${String(i).padStart(10, '0')}` as NamespaceId, randomBytes(32));
    expect(() => keyring.set('one-namespace-too-many' as NamespaceId, randomBytes(32))).toThrow(RangeError);
    // Replacing a key is not adding one.
    keyring.set('namespace-0000000000' as NamespaceId, randomBytes(32));
  });
});
