import { ValidationError } from './errors.ts';
import { expectOnlyKeys, expectRecord } from './fields.ts';

/**
 * A namespace's LAN key as the server hands it to members (GET /api/v1/ns/:ns/lan-key):
 * 32 secret bytes from which LAN peers derive their UDP advert tags and TCP pre-shared key.
 */
export const LAN_KEY_BYTES = 32;

export interface LanKeyResponse {
  /** The key as unpadded base64url: 43 characters. */
  lanKey: string;
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
// 32 bytes = 256 bits in 43 six-bit characters: the last character carries 4 bits and two
// zero bits, so only every fourth letter may end a canonical encoding.
const LAN_KEY_PATTERN = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

export function parseLanKeyResponse(value: unknown): LanKeyResponse {
  const record = expectRecord(value, 'body');
  expectOnlyKeys(record, 'body', ['lanKey']);
  if (typeof record.lanKey !== 'string' || !LAN_KEY_PATTERN.test(record.lanKey)) {
    throw new ValidationError('lanKey', `must be ${LAN_KEY_BYTES} bytes as unpadded base64url (43 characters)`);
  }
  return { lanKey: record.lanKey };
}

/** The key bytes of a response that parseLanKeyResponse accepted. */
export function lanKeyBytes(response: LanKeyResponse): Uint8Array {
  const text = parseLanKeyResponse(response).lanKey;
  const bytes = new Uint8Array(LAN_KEY_BYTES);
  let bits = 0;
  let acc = 0;
  let at = 0;
  for (const char of text) {
    acc = (acc << 6) | BASE64URL.indexOf(char);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes[at++] = (acc >> bits) & 0xff;
    }
  }
  return bytes;
}
