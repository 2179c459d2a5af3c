import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Keys a pass holds in memory (about 100 bytes each: ~100 MiB) before it moves them to disk. */
export const DEFAULT_RETAINED_IN_MEMORY = 1_000_000;

/**
 * The 32-byte digests of every retained block during one GC pass. A workspace store of
 * millions of blocks would need gigabytes as a JavaScript Set, so past `inMemoryLimit` keys
 * the set moves into a temporary SQLite file (a primary key of 32-byte blobs: ~40 bytes a
 * key on disk, a page cache of a few MiB in memory) and answers from there. `close()`
 * deletes the file; a crash leaves it in the OS temp dir, named for what it is.
 */
export class RetainedBlockSet {
  private memory: Set<string> | null = new Set();
  private disk: SpilledKeys | null = null;

  constructor(private readonly inMemoryLimit = DEFAULT_RETAINED_IN_MEMORY) {}

  /** Adds concatenated 32-byte digests (a page of the journal's blocks column). */
  addDigests(digests: Buffer): void {
    if (this.memory) {
      for (let i = 0; i + 32 <= digests.length; i += 32) this.memory.add(digests.toString('latin1', i, i + 32));
      if (this.memory.size > this.inMemoryLimit) this.spill();
      return;
    }
    this.disk!.add(digests);
  }

  /** `key`: a digest as a latin1 string (`digestKey`). */
  has(key: string): boolean {
    return this.memory ? this.memory.has(key) : this.disk!.has(Buffer.from(key, 'latin1'));
  }

  /** Whether the set moved to disk (for the pass report and tests). */
  get spilled(): boolean {
    return this.disk !== null;
  }

  close(): void {
    this.disk?.close();
    this.disk = null;
    this.memory = null;
  }

  private spill(): void {
    const disk = new SpilledKeys();
    const keys = [...this.memory!];
    this.memory = null;
    for (let i = 0; i < keys.length; i += 10_000) disk.add(Buffer.from(keys.slice(i, i + 10_000).join(''), 'latin1'));
    this.disk = disk;
  }
}

/**
 * 32-byte keys in a throwaway SQLite file: no journal, no fsync (it dies with the pass).
 * Keys are appended to an unindexed table and indexed once, at the first lookup: one sort
 * instead of a random B-tree insert per key (3 M keys: minutes instead of most of an hour).
 */
class SpilledKeys {
  private readonly dir = mkdtempSync(join(tmpdir(), 'nearsync-gc-retained-'));
  private readonly db = new Database(join(this.dir, 'retained.db'));
  private readonly insertPage;
  private lookup: Database.Statement | null = null;

  constructor() {
    this.db.pragma('journal_mode = OFF');
    this.db.pragma('synchronous = OFF');
    this.db.pragma('cache_size = -32768');
    this.db.exec('CREATE TABLE retained (digest BLOB NOT NULL)');
    const insert = this.db.prepare('INSERT INTO retained (digest) VALUES (?)');
    this.insertPage = this.db.transaction((digests: Buffer) => {
      for (let i = 0; i + 32 <= digests.length; i += 32) insert.run(digests.subarray(i, i + 32));
    });
  }

  add(digests: Buffer): void {
    this.insertPage(digests);
  }

  has(digest: Buffer): boolean {
    if (!this.lookup) {
      this.db.exec('CREATE INDEX retained_digest ON retained (digest)');
      this.lookup = this.db.prepare('SELECT 1 FROM retained WHERE digest = ? LIMIT 1').pluck();
    }
    return this.lookup.get(digest) !== undefined;
  }

  close(): void {
    this.db.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
