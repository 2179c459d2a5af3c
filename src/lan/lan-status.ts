import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { LanPeeringStatus } from './lan-peering.ts';

/**
 * `<state>/lan-status.json` (mode 0600): the LAN side's counters as JSON, rewritten once a
 * second while they change, for operators and tests (`jq . lan-status.json`). Replaced
 * with a rename, so a reader never sees half a file. No signal handlers, no socket: the
 * state dir is private to the daemon's user already.
 */

export const LAN_STATUS_FILE = 'lan-status.json';

/** Before LAN peering runs: why not yet. */
export interface LanStatusPending {
  lan: 'waiting_for_key';
  keyAttempts: number;
  lastError: string;
  nextAttemptAt: string;
}

export type LanStatus = LanStatusPending | ({ lan: 'on' } & LanPeeringStatus);

export class LanStatusFile {
  private readonly path: string;
  private timer: NodeJS.Timeout | null = null;
  private last = '';
  private writing: Promise<void> = Promise.resolve();

  constructor(
    stateDir: string,
    private readonly read: () => LanStatus,
    private readonly intervalMs = 1_000,
  ) {
    this.path = join(stateDir, LAN_STATUS_FILE);
  }

  start(): void {
    if (this.timer) return;
    void this.flush();
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /** Writes the current status if it changed since the last write. */
  flush(): Promise<void> {
    const text = `${JSON.stringify(this.read(), null, 2)}\n`;
    if (text === this.last) return this.writing;
    this.last = text;
    this.writing = this.writing.then(() => writePrivately(this.path, text)).catch(() => {
      // A full disk must not stop the daemon; the next change tries again.
      this.last = '';
    });
    return this.writing;
  }

  /** Stops the timer after one last write. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }
}

async function writePrivately(path: string, text: string): Promise<void> {
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const file = await open(temp, 'wx', 0o600);
  try {
    await file.writeFile(text);
  } finally {
    await file.close();
  }
  await rename(temp, path).catch(async (error: unknown) => {
    await unlink(temp).catch(() => undefined);
    throw error;
  });
}
