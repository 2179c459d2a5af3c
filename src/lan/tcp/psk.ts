import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { NamespaceId } from '../../protocol/index.ts';

/**
 * Pre-shared keys for the LAN block service, derived from a namespace's LAN key (the
 * secret the server hands to members). TLS sends the PSK identity in clear, so the
 * identity must neither name the namespace nor be the same twice: it is a fresh nonce and
 * a MAC of it under a key only members can derive. A server tries its namespaces' identity
 * keys to learn which PSK to use; an eavesdropper learns nothing and links nothing.
 *
 *   psk         = HKDF-SHA256(lanKey, salt = empty, info = "nearsync lan psk v1", 32 bytes)
 *   identityKey = HKDF-SHA256(lanKey, salt = empty, info = "nearsync lan identity v1", 32 bytes)
 *   identity    = hex(nonce (16 random bytes) ‖ HMAC-SHA256(identityKey, nonce)[0..16])
 */

export const LAN_KEY_BYTES = 32;
export const PSK_BYTES = 32;
const NONCE_BYTES = 16;
const MAC_BYTES = 16;
/** 64 lower-case hex digits. */
export const PSK_IDENTITY_LENGTH = 2 * (NONCE_BYTES + MAC_BYTES);
const IDENTITY_PATTERN = /^[0-9a-f]{64}$/;
const PSK_INFO = 'nearsync lan psk v1';
const IDENTITY_INFO = 'nearsync lan identity v1';
/** Namespaces one keyring holds: bounds the MACs a server computes per handshake. */
export const MAX_KEYRING_NAMESPACES = 64;

export interface NamespaceSecrets {
  ns: NamespaceId;
  psk: Buffer;
  identityKey: Buffer;
}

function derive(lanKey: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', lanKey, Buffer.alloc(0), info, 32));
}

export function namespaceSecrets(ns: NamespaceId, lanKey: Uint8Array): NamespaceSecrets {
  if (!(lanKey instanceof Uint8Array) || lanKey.length !== LAN_KEY_BYTES) {
    throw new RangeError(`a LAN key is ${LAN_KEY_BYTES} bytes`);
  }
  return { ns, psk: derive(lanKey, PSK_INFO), identityKey: derive(lanKey, IDENTITY_INFO) };
}

function identityMac(identityKey: Uint8Array, nonce: Uint8Array): Buffer {
  return createHmac('sha256', identityKey).update(nonce).digest().subarray(0, MAC_BYTES);
}

/** A fresh identity for one connection. */
export function makePskIdentity(identityKey: Uint8Array, nonce: Uint8Array = randomBytes(NONCE_BYTES)): string {
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`the nonce is ${NONCE_BYTES} bytes`);
  return Buffer.concat([nonce, identityMac(identityKey, nonce)]).toString('hex');
}

/** The namespaces a LAN block server serves, and their secrets. */
export class PskKeyring {
  private readonly entries = new Map<NamespaceId, NamespaceSecrets>();

  /** Adds or replaces a namespace's LAN key. */
  set(ns: NamespaceId, lanKey: Uint8Array): void {
    if (!this.entries.has(ns) && this.entries.size >= MAX_KEYRING_NAMESPACES) {
      throw new RangeError(`at most ${MAX_KEYRING_NAMESPACES} namespaces`);
    }
    this.entries.set(ns, namespaceSecrets(ns, lanKey));
  }

  delete(ns: NamespaceId): void {
    this.entries.delete(ns);
  }

  has(ns: NamespaceId): boolean {
    return this.entries.has(ns);
  }

  /** The psk of the current key for `ns`, if any (to tell whether a connection's key is still current). */
  pskOf(ns: NamespaceId): Buffer | undefined {
    return this.entries.get(ns)?.psk;
  }

  /**
   * The namespace whose identity key made `identity`, or null. Every key is tried, with a
   * constant-time compare, whatever matches first, so the time taken says nothing about
   * which namespace (or whether any) matched.
   */
  find(identity: unknown): NamespaceSecrets | null {
    if (typeof identity !== 'string' || !IDENTITY_PATTERN.test(identity)) return null;
    const raw = Buffer.from(identity, 'hex');
    const nonce = raw.subarray(0, NONCE_BYTES);
    const mac = raw.subarray(NONCE_BYTES);
    let found: NamespaceSecrets | null = null;
    for (const entry of this.entries.values()) {
      if (timingSafeEqual(identityMac(entry.identityKey, nonce), mac) && found === null) found = entry;
    }
    return found;
  }
}
