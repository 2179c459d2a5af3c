import { constants } from 'node:crypto';

/**
 * The one TLS profile of the LAN block service, on both ends. TLS 1.3 only: Node 20
 * (OpenSSL 3) negotiates an external PSK through `pskCallback` in TLS 1.3, in psk_dhe_ke
 * mode (the PSK authenticates an X25519 exchange, so a leaked LAN key does not decrypt
 * recorded sessions). OpenSSL's PSK callbacks fix the PSK hash to SHA-256, so only the two
 * SHA-256 suites can be used; AES-128-GCM comes first (AES-NI), ChaCha20 for machines
 * without it. No certificate is involved: the PSK is the only credential.
 */
export const LAN_TLS_VERSION = 'TLSv1.3' as const;
export const LAN_TLS_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';

export const lanTlsOptions = {
  minVersion: LAN_TLS_VERSION,
  maxVersion: LAN_TLS_VERSION,
  ciphers: LAN_TLS_CIPHERS,
} as const;

/**
 * Server side: no session tickets. A resumed session would skip `pskCallback`, which is
 * where a connection learns its namespace (and a removed member could resume with an old
 * ticket). The server also refuses any connection whose namespace the callback did not set.
 */
export const lanServerSecureOptions = constants.SSL_OP_NO_TICKET;
