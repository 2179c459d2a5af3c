import { openDB, type DBSchema, type IDBPDatabase } from 'idb';
import { MAX_BLOCK_SIZE, type BlockHash } from '../src/protocol/index.ts';

/**
 * The CRC-32 of each stored block file, kept so a zip can write an entry's CRC from its blocks'
 * (crc32Combine) without reading a byte of them: the block writer records it as it stores a
 * fetched block, a zip records it the first time it has to read a block that has none.
 *
 * Keyed by the block's hash, which names its content: a block evicted and fetched again is the
 * same bytes, so a record cannot go stale; records are dropped with their blocks all the same,
 * to keep the store small. A record holds the block's length as well, and is used only when
 * the stored block has that length (otherwise the CRC is computed again): it is local data,
 * but one that survives versions of this code and tabs that write it.
 *
 * A database of its own, not a store in `nearsync`: adding a store would bump that database's
 * version, which closes every open tab still running the code before; this one can come and go
 * (cleared, or failing to open) without costing more than reading the blocks again.
 */

export interface BlockCrc {
  crc32: number;
  /** The block's length in bytes. */
  size: number;
}

interface CrcSchema extends DBSchema {
  crcs: { key: string; value: BlockCrc };
}

const DB_NAME = 'nearsync-block-crcs';
/**
 * 2: a database opened without a version by anything else (devtools, a test) is created at
 * version 1 with no store; version 2 gives such a database its store instead of failing every
 * write. The upgrade only ever adds the store where it is missing.
 */
const DB_VERSION = 2;
/** Records waiting this long, or this many, go in one transaction. */
const FLUSH_DELAY_MS = 1_000;
const FLUSH_COUNT = 256;

export class BlockCrcs {
  private readonly pending = new Map<BlockHash, BlockCrc>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private db: Promise<IDBPDatabase<CrcSchema> | null> | null = null;

  /** Remembers a block's CRC (written within a second, with others). */
  remember(hash: BlockHash, record: BlockCrc): void {
    const checked = parseBlockCrc(record);
    if (!checked) throw new Error(`not a CRC record for block ${hash.slice(0, 12)}…: ${JSON.stringify(record)}`);
    this.pending.set(hash, checked);
    if (this.pending.size >= FLUSH_COUNT) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_DELAY_MS);
  }

  /** The records of those blocks that have one (a valid one: anything else read is ignored). */
  async get(hashes: readonly BlockHash[]): Promise<Map<BlockHash, BlockCrc>> {
    const found = new Map<BlockHash, BlockCrc>();
    const unknown: BlockHash[] = [];
    for (const hash of hashes) {
      const pending = this.pending.get(hash);
      if (pending) found.set(hash, pending);
      else unknown.push(hash);
    }
    if (unknown.length === 0) return found;
    const db = await this.open();
    if (!db) return found;
    try {
      const tx = db.transaction('crcs');
      const values = await Promise.all(unknown.map((hash) => tx.store.get(hash)));
      await tx.done;
      unknown.forEach((hash, i) => {
        const record = parseBlockCrc(values[i]);
        if (record) found.set(hash, record);
      });
    } catch {
      // Unreadable: the zip computes what it lacks.
    }
    return found;
  }

  /** Drops the records of blocks no longer stored. */
  async forget(hashes: readonly BlockHash[]): Promise<void> {
    for (const hash of hashes) this.pending.delete(hash);
    const db = await this.open();
    if (!db || hashes.length === 0) return;
    const tx = db.transaction('crcs', 'readwrite');
    for (const hash of hashes) void tx.store.delete(hash);
    await tx.done.catch(() => undefined);
  }

  /** Writes what waits. A failed write loses only records that can be computed again. */
  async flush(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.size === 0) return;
    const batch = [...this.pending];
    const db = await this.open();
    if (!db) return;
    try {
      const tx = db.transaction('crcs', 'readwrite');
      for (const [hash, record] of batch) void tx.store.put(record, hash);
      await tx.done;
    } catch {
      // Quota or a closed database: left for the next zip to compute.
    }
    // Only what was written leaves (a newer record for the same block stays queued).
    for (const [hash, record] of batch) if (this.pending.get(hash) === record) this.pending.delete(hash);
  }

  private open(): Promise<IDBPDatabase<CrcSchema> | null> {
    this.db ??= openDB<CrcSchema>(DB_NAME, DB_VERSION, {
      upgrade(db) {
        if (!db.objectStoreNames.contains('crcs')) db.createObjectStore('crcs');
      },
    }).then(
      (db) => {
        // A newer tab upgrading this database: step aside (records are then only kept in memory until reopened).
        db.addEventListener('versionchange', () => {
          db.close();
          this.db = null;
        });
        return db;
      },
      () => {
        // Failed now (e.g. deleted while this open waited): the next use tries again.
        this.db = null;
        return null;
      },
    );
    return this.db;
  }
}

/** A stored record as this code writes it, or undefined: a CRC is a 32-bit unsigned integer, a size a block's length. */
export function parseBlockCrc(value: unknown): BlockCrc | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { crc32, size } = value as { crc32?: unknown; size?: unknown };
  if (typeof crc32 !== 'number' || !Number.isInteger(crc32) || crc32 < 0 || crc32 > 0xffffffff) return undefined;
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > MAX_BLOCK_SIZE) return undefined;
  return { crc32, size };
}
