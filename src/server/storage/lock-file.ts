import { randomBytes } from 'node:crypto';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';

/** A lock file written on another host counts as abandoned after this long (its process cannot be asked). */
const FOREIGN_STALE_MS = 6 * 3_600_000;

interface Owner {
  pid: number;
  host: string;
  at: number;
}

/**
 * Takes the lock file at `path` (created exclusively, holding the owner's pid, host and time)
 * and resolves with its release, or null when another live owner holds it. A lock left by a
 * process that is gone (same host: its pid no longer runs; another host: older than 6 h) is
 * taken over. Two processes taking over the same abandoned lock at the same moment could
 * both succeed; that needs a crash first and two passes starting within milliseconds.
 */
export async function tryLockFile(path: string): Promise<(() => Promise<void>) | null> {
  const owner: Owner = { pid: process.pid, host: hostname(), at: Date.now() };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, JSON.stringify(owner), { flag: 'wx', mode: 0o644 });
      return async () => {
        await unlink(path).catch(() => {});
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (!(await abandoned(path))) return null;
    // Moved aside rather than unlinked: of several processes taking it over, one rename wins.
    const aside = `${path}.abandoned-${randomBytes(4).toString('hex')}`;
    try {
      await rename(path, aside);
    } catch (err) {
      // Already gone: try to create it again; anything else: leave it to its owner.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      return null;
    }
    await unlink(aside).catch(() => {});
  }
  return null;
}

async function abandoned(path: string): Promise<boolean> {
  let owner: Partial<Owner>;
  try {
    owner = JSON.parse(await readFile(path, 'utf8')) as Partial<Owner>;
  } catch (err) {
    // Gone meanwhile (try again), or unreadable / half-written: only old enough counts as abandoned.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    return false;
  }
  if (owner.host === hostname() && typeof owner.pid === 'number') return !processRuns(owner.pid);
  return typeof owner.at !== 'number' || Date.now() - owner.at > FOREIGN_STALE_MS;
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
