import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LAN_IDENTITY_FILE, LanIdentity } from '../../src/lan/lan-identity.ts';
import { LAN_ADVERT_MAX_SEQUENCE } from '../../src/protocol/index.ts';

describe('LanIdentity: the LAN peer id kept in the state dir', () => {
  let dir: string;
  const lines: string[] = [];
  const log = (line: string) => lines.push(line);
  const stored = async () => JSON.parse(await readFile(join(dir, LAN_IDENTITY_FILE), 'utf8')) as { peerId: string; nextSequence: number };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'nearsync-lan-identity-'));
    lines.length = 0;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates an id once (file 0600) and gives the same one back after a restart', async () => {
    const first = await LanIdentity.load(dir, log);
    expect(first.peerIdHex).toMatch(/^[0-9a-f]{32}$/);
    expect(first.firstSequence).toBe(1);
    expect((await stat(join(dir, LAN_IDENTITY_FILE))).mode & 0o777).toBe(0o600);
    const second = await LanIdentity.load(dir, log);
    expect(second.peerIdHex).toBe(first.peerIdHex);
    expect(lines).toEqual([]);
  });

  it('a restart starts its adverts above every sequence the run before sent, however it ended', async () => {
    const first = await LanIdentity.load(dir, log);
    // The run sends adverts; the reservation moves ahead of them before they reach it.
    let sent = first.firstSequence;
    for (; sent < 30_000; sent += 997) await first.keepAhead(sent);
    // Killed here without a word: the next run must not reuse any of 1 … sent.
    const second = await LanIdentity.load(dir, log);
    expect(second.peerIdHex).toBe(first.peerIdHex);
    expect(second.firstSequence).toBeGreaterThan(sent);
    // And a run that sent nothing still moves the next start forward.
    const third = await LanIdentity.load(dir, log);
    expect(third.firstSequence).toBeGreaterThan(second.firstSequence);
  });

  it('replaces an unreadable file, and an id whose sequences are used up, with a new id', async () => {
    await writeFile(join(dir, LAN_IDENTITY_FILE), '{"peerId":"../../etc","nextSequence":1}');
    const fresh = await LanIdentity.load(dir, log);
    expect(fresh.peerIdHex).toMatch(/^[0-9a-f]{32}$/);
    expect(lines.at(-1)).toMatch(/unreadable .*a new LAN peer id/);
    expect((await stored()).peerId).toBe(fresh.peerIdHex);

    await writeFile(join(dir, LAN_IDENTITY_FILE), JSON.stringify({ peerId: fresh.peerIdHex, nextSequence: LAN_ADVERT_MAX_SEQUENCE - 10 }));
    const renewed = await LanIdentity.load(dir, log);
    expect(renewed.peerIdHex).not.toBe(fresh.peerIdHex);
    expect(renewed.firstSequence).toBe(1);
    expect(lines.at(-1)).toMatch(/used up/);
  });
});
