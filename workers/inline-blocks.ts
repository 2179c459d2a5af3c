import type { BlockHash } from '../src/protocol/index.ts';
import type { NearsyncDb } from './idb-store.ts';

/**
 * Small blocks (up to INLINE_BLOCK_MAX bytes) in IndexedDB, written together as packs: one
 * value of concatenated bytes (`blockPacks`) and one small record of which blocks it holds and
 * where (`packIndex`), each pack at most 60 KiB. A workspace of 100,000 small files would otherwise be 100,000 block
 * files (about 4 ms of worker time each, measured) or 100,000 IndexedDB puts (about 0.2 ms of
 * worker and browser time each: 10,000 puts of 1.6 KiB took 2.0 s, 40 packs of 256 0.39 s).
 *
 * The pack index lives in memory, read whole at first use (a few hundred records for 100,000
 * blocks), so asking which of thousands of blocks are stored costs no request. Another tab's
 * new packs are picked up when a block is not found. The version 3 store of one value per
 * block (`inlineBlocks`) is still read; nothing new is written there.
 */
export const INLINE_BLOCK_MAX = 48 * 1024;

/** Where each block of a pack lies: block i is bytes [offsets[i], offsets[i + 1]). */
export interface PackIndexRecord {
  hashes: BlockHash[];
  offsets: number[];
}

/** Puts queued this long (or this many, or this many bytes) go in one transaction. */
const FLUSH_DELAY_MS = 8;
const FLUSH_COUNT = 1024;
const FLUSH_BYTES = 1024 * 1024;
/**
 * A pack is read whole to serve one of its blocks, and Chromium moves values over 64 KiB out
 * to blob files: reading one 960 KiB pack took 17 ms, one 58 KiB pack 2–10 ms (50 reads each,
 * Chromium 156), while writing 10,000 blocks cost about the same either way.
 */
const PACK_MAX_BYTES = 60 * 1024;
/** Packs kept in memory after a read (serving a peer reads a pack's blocks one after another). */
const PACK_CACHE = 4;
/** Another tab's packs are looked for at most this often while blocks keep missing. */
const REFRESH_INTERVAL_MS = 2_000;

interface PendingPut {
  hash: BlockHash;
  bytes: Uint8Array;
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface BlockPlace {
  pack: string;
  start: number;
  end: number;
}

interface MemoryIndex {
  blocks: Map<BlockHash, BlockPlace>;
  packs: Set<string>;
  /** Version 3's one-value-per-block keys. */
  legacy: Set<BlockHash>;
  refreshedAt: number;
}

export class InlineBlocks {
  private queue: PendingPut[] = [];
  private queuedBytes = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private index: Promise<MemoryIndex> | null = null;
  private readonly packCache = new Map<string, Uint8Array>();

  constructor(private readonly db: NearsyncDb) {}

  put(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ hash, bytes, resolve, reject });
      this.queuedBytes += bytes.length;
      if (this.queue.length >= FLUSH_COUNT || this.queuedBytes >= FLUSH_BYTES) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), FLUSH_DELAY_MS);
    });
  }

  async has(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    let index = await this.loadIndex();
    const found = (idx: MemoryIndex) => new Set(hashes.filter((hash) => idx.blocks.has(hash) || idx.legacy.has(hash)));
    let present = found(index);
    if (present.size < hashes.length && Date.now() - index.refreshedAt >= REFRESH_INTERVAL_MS) {
      index = await this.refresh();
      present = found(index);
    }
    return present;
  }

  async get(hash: BlockHash): Promise<Uint8Array | undefined> {
    let index = await this.loadIndex();
    // Another tab may have stored it since the index was read (callers look in block files
    // first, so a miss here is rare).
    if (!index.blocks.has(hash) && !index.legacy.has(hash)) index = await this.refresh();
    const place = index.blocks.get(hash);
    if (place) {
      const pack = await this.readPack(place.pack);
      // A copy: callers may transfer or keep it, and must not pin the whole pack.
      if (pack && pack.length >= place.end) return pack.slice(place.start, place.end);
    }
    return index.legacy.has(hash) ? this.db.get('inlineBlocks', hash) : undefined;
  }

  /**
   * Several blocks at once, each pack read once for all the blocks asked of it (and not kept in
   * the pack cache): a zip of many small files reads them this way, a window of files at a time,
   * where one read per file could read the same 60 KiB pack dozens of times (when the zip's
   * folder order is not the order the blocks were stored in). Blocks not found are left out (the
   * caller reads them one by one).
   *
   * What it reads is let go as it goes, not left for the garbage collector: a window reads
   * thousands of packs for a few blocks each (150 MiB for 16 MiB of blocks, measured in the zip
   * bench), and V8 and Blink collected that only every 100–160 MiB. So the packs come through
   * one cursor in one transaction, jumping key to key (a request per pack would each keep its
   * pack's serialized value until collected), each pack's ArrayBuffer is freed once its blocks
   * are copied out (`transfer(0)` detaches it and drops its memory at once), and the blocks are
   * copied into one buffer for the whole answer rather than one allocation each.
   */
  async getMany(hashes: readonly BlockHash[]): Promise<Map<BlockHash, Uint8Array>> {
    const index = await this.loadIndex();
    const byPack = new Map<string, BlockHash[]>();
    let total = 0;
    for (const hash of new Set(hashes)) {
      const place = index.blocks.get(hash);
      if (!place) continue;
      total += place.end - place.start;
      const list = byPack.get(place.pack);
      if (list) list.push(hash);
      else byPack.set(place.pack, [hash]);
    }
    const found = new Map<BlockHash, Uint8Array>();
    const answer = new Uint8Array(total);
    let used = 0;
    const copyOut = (id: string, pack: Uint8Array) => {
      for (const hash of byPack.get(id)!) {
        const place = index.blocks.get(hash);
        if (!place || place.pack !== id || pack.length < place.end) continue;
        const block = answer.subarray(used, used + place.end - place.start);
        block.set(pack.subarray(place.start, place.end));
        used += block.length;
        found.set(hash, block);
      }
    };
    const toRead: string[] = [];
    for (const id of byPack.keys()) {
      const cached = this.packCache.get(id);
      if (cached) copyOut(id, cached);
      else toRead.push(id);
    }
    // Key order (string keys compare by UTF-16 code units in IndexedDB, as sort() does).
    toRead.sort();
    if (toRead.length > 0) {
      const tx = this.db.transaction('blockPacks');
      let cursor = await tx.store.openCursor(IDBKeyRange.lowerBound(toRead[0]));
      let next = 0;
      while (cursor) {
        const key = cursor.key;
        // A pack deleted since the index was read is passed over (its blocks are left out).
        while (next < toRead.length && toRead[next] < key) next++;
        if (next === toRead.length) break;
        if (toRead[next] === key) {
          const pack = cursor.value;
          copyOut(key, pack);
          release(pack);
          if (++next === toRead.length) break;
        }
        cursor = await cursor.continue(toRead[next]);
      }
      await tx.done;
    }
    return found;
  }

  async list(): Promise<BlockHash[]> {
    const index = await this.refresh();
    return [...new Set([...index.blocks.keys(), ...index.legacy])];
  }

  /** Removes blocks: each pack holding some is rewritten without them, or deleted when emptied. */
  async delete(hashes: readonly BlockHash[]): Promise<void> {
    if (hashes.length === 0) return;
    const index = await this.refresh();
    const doomed = new Set(hashes);
    const tx = this.db.transaction(['blockPacks', 'packIndex', 'inlineBlocks'], 'readwrite');
    const packs = tx.objectStore('blockPacks');
    const records = tx.objectStore('packIndex');
    const touched = new Set<string>();
    for (const hash of hashes) {
      const place = index.blocks.get(hash);
      if (place) touched.add(place.pack);
    }
    for (const id of touched) {
      const [record, bytes] = await Promise.all([records.get(id), packs.get(id)]);
      this.packCache.delete(id);
      if (!record || !bytes) continue;
      const kept = record.hashes.map((hash, i) => ({ hash, bytes: bytes.subarray(record.offsets[i], record.offsets[i + 1]) })).filter((block) => !doomed.has(block.hash));
      for (const hash of record.hashes) if (doomed.has(hash) && index.blocks.get(hash)?.pack === id) index.blocks.delete(hash);
      if (kept.length === 0) {
        void packs.delete(id);
        void records.delete(id);
        index.packs.delete(id);
        continue;
      }
      const pack = packBlocks(kept);
      void packs.put(pack.bytes, id);
      void records.put(pack.record, id);
      placeAll(index, id, pack.record);
    }
    const legacy = tx.objectStore('inlineBlocks');
    for (const hash of hashes) {
      if (index.legacy.delete(hash)) void legacy.delete(hash);
    }
    await tx.done;
  }

  private loadIndex(): Promise<MemoryIndex> {
    this.index ??= (async () => {
      const index: MemoryIndex = { blocks: new Map(), packs: new Set(), legacy: new Set(), refreshedAt: 0 };
      const tx = this.db.transaction(['packIndex', 'inlineBlocks']);
      const [ids, records, legacy] = await Promise.all([tx.objectStore('packIndex').getAllKeys(), tx.objectStore('packIndex').getAll(), tx.objectStore('inlineBlocks').getAllKeys()]);
      await tx.done;
      ids.forEach((id, i) => placeAll(index, id, records[i]));
      for (const hash of legacy) index.legacy.add(hash as BlockHash);
      index.refreshedAt = Date.now();
      return index;
    })();
    this.index.catch(() => (this.index = null));
    return this.index;
  }

  /** Adds the packs other tabs wrote since the index was read. */
  private async refresh(): Promise<MemoryIndex> {
    const index = await this.loadIndex();
    const ids = await this.db.getAllKeys('packIndex');
    const fresh = ids.filter((id) => !index.packs.has(id));
    if (fresh.length > 0) {
      const tx = this.db.transaction('packIndex');
      const records = await Promise.all(fresh.map((id) => tx.store.get(id)));
      await tx.done;
      fresh.forEach((id, i) => {
        const record = records[i];
        if (record) placeAll(index, id, record);
      });
    }
    index.refreshedAt = Date.now();
    return index;
  }

  private async readPack(id: string): Promise<Uint8Array | undefined> {
    const cached = this.packCache.get(id);
    if (cached) {
      // Most recently used last.
      this.packCache.delete(id);
      this.packCache.set(id, cached);
      return cached;
    }
    const bytes = await this.db.get('blockPacks', id);
    if (!bytes) return undefined;
    this.packCache.set(id, bytes);
    if (this.packCache.size > PACK_CACHE) this.packCache.delete(this.packCache.keys().next().value!);
    return bytes;
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    if (batch.length > 0) void this.write(batch);
  }

  private async write(batch: PendingPut[]): Promise<void> {
    try {
      const index = await this.loadIndex();
      const seen = new Set<BlockHash>();
      // A block stored already (or twice in this batch) is not packed again.
      const fresh = batch.filter((put) => !index.blocks.has(put.hash) && !index.legacy.has(put.hash) && !seen.has(put.hash) && seen.add(put.hash));
      const packs: Array<{ id: string; bytes: Uint8Array; record: PackIndexRecord }> = [];
      for (let start = 0; start < fresh.length; ) {
        let end = start;
        let bytes = 0;
        while (end < fresh.length && (end === start || bytes + fresh[end].bytes.length <= PACK_MAX_BYTES)) bytes += fresh[end++].bytes.length;
        packs.push({ id: crypto.randomUUID(), ...packBlocks(fresh.slice(start, end)) });
        start = end;
      }
      if (packs.length > 0) {
        const tx = this.db.transaction(['blockPacks', 'packIndex'], 'readwrite');
        for (const pack of packs) {
          void tx.objectStore('blockPacks').put(pack.bytes, pack.id).catch(() => undefined);
          void tx.objectStore('packIndex').put(pack.record, pack.id).catch(() => undefined);
        }
        await tx.done;
        for (const pack of packs) placeAll(index, pack.id, pack.record);
      }
      batch.forEach((put) => put.resolve());
    } catch (error) {
      batch.forEach((put) => put.reject(error));
    }
  }
}

/** Frees a buffer this thread owns and no longer needs now, rather than at the next collection. */
function release(bytes: Uint8Array): void {
  const buffer = bytes.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };
  try {
    buffer.transfer?.(0);
  } catch {
    // Not detachable (a shared or wasm buffer): left to the collector.
  }
}

function packBlocks(blocks: ReadonlyArray<{ hash: BlockHash; bytes: Uint8Array }>): { bytes: Uint8Array; record: PackIndexRecord } {
  const offsets = [0];
  for (const block of blocks) offsets.push(offsets[offsets.length - 1] + block.bytes.length);
  const bytes = new Uint8Array(offsets[offsets.length - 1]);
  blocks.forEach((block, i) => bytes.set(block.bytes, offsets[i]));
  return { bytes, record: { hashes: blocks.map((block) => block.hash), offsets } };
}

function placeAll(index: MemoryIndex, id: string, record: PackIndexRecord): void {
  index.packs.add(id);
  record.hashes.forEach((hash, i) => index.blocks.set(hash, { pack: id, start: record.offsets[i], end: record.offsets[i + 1] }));
}
