import { createHmac, randomBytes } from 'node:crypto';
import type { PeerId } from '../../protocol/index.ts';

/**
 * Relay peer ids for LAN peers: "p_" + 16 base64url characters, like the ids the relay gives
 * browsers, derived with an HMAC under a secret of this process. A LAN peer keeps its id for
 * the run (a browser's fetches stay pointed at it across adverts), a browser cannot tell two
 * runs apart, and the 96-bit id is as unlikely to collide with a browser's as two of those.
 */
export class LanRelayIds {
  private readonly secret: Buffer;

  constructor(secret: Uint8Array = randomBytes(32)) {
    this.secret = Buffer.from(secret);
  }

  /** The relay id of the LAN peer whose (hex) LAN peer id is `lanPeerId`. */
  relayIdOf(lanPeerId: string): PeerId {
    const mac = createHmac('sha256', this.secret).update(`lan-peer:${lanPeerId}`).digest();
    return `p_${mac.subarray(0, 12).toString('base64url')}` as PeerId;
  }
}
