import { randomBytes } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { LAN_ADVERT_MAX_SEQUENCE, LAN_PEER_ID_BYTES, expectRecord } from '../protocol/index.ts';

/**
 * The daemon's LAN identity, kept in `<state>/lan-peer.json` (mode 0600) so a restarted
 * daemon is the same peer to the others: its peer id, and the advert sequence it may start
 * from. Listeners refuse an advert whose sequence is not above the last one heard from that
 * peer id, so a restart must never reuse a sequence: the file holds a reservation ahead of
 * every sequence sent, moved forward before the advertiser gets close to it. Writing it per
 * datagram would cost a disk write per cursor advance; a crash skips at most one reservation.
 */

export const LAN_IDENTITY_FILE = 'lan-peer.json';
/** Sequences reserved per write of the file. */
const RESERVATION = 10_000;
/** Reserve again when fewer than this many are left. */
const MARGIN = 5_000;

export class LanIdentity {
  private reservedUpTo: number;
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly path: string,
    readonly peerId: Uint8Array,
    /** The sequence of this run's first advert. */
    readonly firstSequence: number,
  ) {
    this.reservedUpTo = firstSequence;
  }

  /** The stored identity, or a new one when there is none (or it is unreadable or used up). */
  static async load(stateDir: string, log: (line: string) => void): Promise<LanIdentity> {
    const path = join(stateDir, LAN_IDENTITY_FILE);
    let stored: { peerId: Uint8Array; nextSequence: number } | null = null;
    try {
      stored = parseIdentity(await readFile(path, 'utf8'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') log(`LAN: ${LAN_IDENTITY_FILE} unreadable (${(error as Error).message}): a new LAN peer id`);
    }
    if (stored && stored.nextSequence > LAN_ADVERT_MAX_SEQUENCE - 2 * RESERVATION) {
      log('LAN: advert sequences of this peer id used up: a new LAN peer id');
      stored = null;
    }
    const identity = new LanIdentity(path, stored?.peerId ?? new Uint8Array(randomBytes(LAN_PEER_ID_BYTES)), stored?.nextSequence ?? 1);
    await identity.reserve(identity.firstSequence);
    return identity;
  }

  get peerIdHex(): string {
    return Buffer.from(this.peerId).toString('hex');
  }

  /** Called with the advertiser's last sequence; moves the reservation ahead when it is close. */
  keepAhead(lastSequence: number): Promise<void> {
    if (lastSequence + MARGIN < this.reservedUpTo) return this.writing;
    return this.reserve(lastSequence);
  }

  private reserve(from: number): Promise<void> {
    const upTo = Math.min(LAN_ADVERT_MAX_SEQUENCE, from + RESERVATION);
    this.reservedUpTo = upTo;
    this.writing = this.writing.then(() => writePrivately(this.path, { peerId: this.peerIdHex, nextSequence: upTo }));
    return this.writing;
  }
}

function parseIdentity(text: string): { peerId: Uint8Array; nextSequence: number } {
  const record = expectRecord(JSON.parse(text), LAN_IDENTITY_FILE);
  const peerId = record.peerId;
  if (typeof peerId !== 'string' || !new RegExp(`^[0-9a-f]{${2 * LAN_PEER_ID_BYTES}}$`).test(peerId)) throw new Error('peerId is malformed');
  const next = record.nextSequence;
  if (typeof next !== 'number' || !Number.isInteger(next) || next < 1 || next > LAN_ADVERT_MAX_SEQUENCE) throw new Error('nextSequence is malformed');
  return { peerId: new Uint8Array(Buffer.from(peerId, 'hex')), nextSequence: next };
}

/** Temp file (0600), fsync, rename: a crash leaves the old file or the new one. */
async function writePrivately(path: string, value: unknown): Promise<void> {
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const file = await open(temp, 'wx', 0o600);
  try {
    await file.writeFile(`${JSON.stringify(value)}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temp, path);
}
