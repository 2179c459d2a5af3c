import { createHmac, createSecretKey, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import {
  LAN_ADVERT_TAG_BYTES,
  LAN_KEY_BYTES,
  lanAdvertTagMessage,
  type LanAdvertDatagram,
  type NamespaceId,
} from '../../protocol/index.ts';

/**
 * The secrets of LAN adverts. Each namespace's advert key is derived from its LAN key
 *
 *   advertKey = HKDF-SHA256(lanKey, salt = empty, info = "nearsync lan advert v1", 32 bytes)
 *
 * and an entry's tag is HMAC-SHA256(advertKey, lanAdvertTagMessage(header, cursor)) cut to
 * 16 bytes. Deriving a separate key keeps the advert tags and the TCP pre-shared key (derived
 * from the same LAN key with another info string) independent.
 */
const ADVERT_KEY_INFO = 'nearsync lan advert v1';

export function deriveAdvertKey(lanKey: Uint8Array): KeyObject {
  if (!(lanKey instanceof Uint8Array) || lanKey.length !== LAN_KEY_BYTES) throw new TypeError(`a LAN key is ${LAN_KEY_BYTES} bytes`);
  return createSecretKey(Buffer.from(hkdfSync('sha256', lanKey, Buffer.alloc(0), ADVERT_KEY_INFO, 32)));
}

export function advertTag(key: KeyObject, header: Omit<LanAdvertDatagram, 'entries'>, cursor: number): Uint8Array {
  const mac = createHmac('sha256', key).update(lanAdvertTagMessage(header, cursor)).digest();
  return new Uint8Array(mac.subarray(0, LAN_ADVERT_TAG_BYTES));
}

/** The advert keys of the namespaces one LAN peer belongs to. */
export class AdvertKeyring {
  private readonly keys = new Map<NamespaceId, KeyObject>();

  set(ns: NamespaceId, lanKey: Uint8Array): void {
    this.keys.set(ns, deriveAdvertKey(lanKey));
  }

  delete(ns: NamespaceId): void {
    this.keys.delete(ns);
  }

  get size(): number {
    return this.keys.size;
  }

  keyOf(ns: NamespaceId): KeyObject | undefined {
    return this.keys.get(ns);
  }

  /**
   * The namespace whose key made `tag`, or null. Costs one HMAC per namespace held; every
   * key is tried (no early exit), so the time taken does not tell which key matched.
   */
  match(header: Omit<LanAdvertDatagram, 'entries'>, cursor: number, tag: Uint8Array): NamespaceId | null {
    if (tag.length !== LAN_ADVERT_TAG_BYTES) return null;
    let found: NamespaceId | null = null;
    for (const [ns, key] of this.keys) {
      if (timingSafeEqual(advertTag(key, header, cursor), tag)) found = ns;
    }
    return found;
  }
}
