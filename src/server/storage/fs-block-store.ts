import { randomBytes } from 'node:crypto';
import fs, { constants as fsConstants } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { BlockHash } from '../../protocol/index.ts';
import type { BlockBody, BlockStore, NamedPutResult, OpenedBlock, PutResult, StoredBlock, VerifiedBlock } from './block-store.ts';
import { BlockVerifier, verifyKnownBlock } from './block-verifier.ts';
import { mapBounded } from './bounded-map.ts';
import { SmallFileReadPool } from './small-file-reads.ts';

const STAT_CONCURRENCY = 64;
const SIZE_CACHE_LIMIT = 100_000;
const READ_CHUNK = 256 * 1024;
/** Temp files putMany writes and fsyncs at once, and directories it fsyncs at once. */
const SYNC_CONCURRENCY = 8;
/** Blocks smaller than this are read whole into memory rather than streamed. */
export const IN_MEMORY_BELOW = 64 * 1024;
/** Read buffers of IN_MEMORY_BELOW bytes kept for reuse (about as many as reads run at once). */
const SCRATCH_KEPT = 16;
/** Files lstat-ed or unlinked at once by block GC. */
const GC_CONCURRENCY = 16;
const FAN_OUT = /^[0-9a-f]{2}$/;
const BLOCK_NAME = /^[0-9a-f]{64}$/;

/**
 * Blocks as files under `${root}/ab/cd/<hash>`. An upload goes to a temp file in
 * `${root}/tmp`, is fsynced, then renamed into place (and the directory fsynced), so a
 * block file is either absent or complete. Temp files left by a crash are removed at open.
 */
export class FsBlockStore implements BlockStore {
  private readonly tmpDir: string;
  /**
   * Sizes of stored blocks; blocks are immutable, and only GC removes them: entries are
   * dropped when this instance removes a block or learns that GC ran (forgetSizes).
   */
  private readonly sizes = new Map<string, number>();
  /** Grows at each forgetSizes: a check that began before must not fill the cache. */
  private sizesEpoch = 0;
  /** Spare read buffers for openRead: a small block is read into one, then copied out at its size. */
  private readonly scratch: Buffer[] = [];
  private readonly smallReads = new SmallFileReadPool(IN_MEMORY_BELOW);

  private constructor(private readonly root: string) {
    this.tmpDir = join(root, 'tmp');
  }

  static async open(root: string): Promise<FsBlockStore> {
    const store = new FsBlockStore(root);
    await mkdir(root, { recursive: true });
    await rm(store.tmpDir, { recursive: true, force: true });
    await mkdir(store.tmpDir, { recursive: true });
    return store;
  }

  pathOf(hash: BlockHash): string {
    return join(this.root, hash.slice(0, 2), hash.slice(2, 4), hash);
  }

  async stat(hash: BlockHash): Promise<number | null> {
    const cached = this.sizes.get(hash);
    if (cached !== undefined) return cached;
    return this.statFile(hash);
  }

  /**
   * stat() that asks the file system even when the size is cached. Uploads decide with it
   * whether to write: a size cached before another instance's GC removed the block would
   * make an upload store nothing, and the client's commit ask for the block again and again.
   */
  private async statFile(hash: BlockHash): Promise<number | null> {
    const epoch = this.sizesEpoch;
    try {
      const info = await stat(this.pathOf(hash));
      if (epoch === this.sizesEpoch) this.remember(hash, info.size);
      return info.size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async statMany(hashes: readonly BlockHash[]): Promise<(number | null)[]> {
    return mapBounded(hashes, STAT_CONCURRENCY, (hash) => this.stat(hash));
  }

  async put(hash: BlockHash, body: BlockBody, maxBytes: number): Promise<PutResult> {
    const known = await this.statFile(hash);
    const verifier = new BlockVerifier(hash, maxBytes);
    if (known !== null) return verifyKnownBlock(verifier, body);
    const { status, size } = await this.receive(body, verifier, () => {
      verifier.verify();
      return hash;
    });
    return { status, size };
  }

  /** Streamed to a temp file like `put`, and filed under the hash only once the body has ended. */
  async putUnnamed(body: BlockBody, maxBytes: number): Promise<NamedPutResult> {
    const verifier = new BlockVerifier(null, maxBytes);
    return this.receive(body, verifier, () => verifier.name());
  }

  /**
   * Writes `body` to a temp file as it arrives, then asks `nameOf` (which throws to refuse the
   * block), fsyncs and renames the temp file into place, unless the block is there already.
   */
  private async receive(body: BlockBody, verifier: BlockVerifier, nameOf: () => BlockHash): Promise<NamedPutResult> {
    const tmp = join(this.tmpDir, `upload.${randomBytes(8).toString('hex')}`);
    let file: FileHandle | null = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
    try {
      await body(async (chunk) => {
        verifier.update(chunk);
        await file!.write(chunk);
      });
      const hash = nameOf();
      if ((await this.statFile(hash)) !== null) {
        // Stored already (an unnamed upload of a known block), or a concurrent upload won the race.
        await file.close();
        file = null;
        await unlink(tmp);
        return { status: 'exists', size: verifier.size, hash };
      }
      await file.sync();
      await file.close();
      file = null;
      const final = this.pathOf(hash);
      const dir = join(final, '..');
      const created = await mkdir(dir, { recursive: true });
      if (created !== undefined) {
        // New fan-out directories: make their entries durable too.
        await fsyncDir(this.root);
        await fsyncDir(join(dir, '..'));
      }
      if ((await this.statFile(hash)) !== null) {
        // A concurrent upload of the same block won the race.
        await unlink(tmp);
        return { status: 'exists', size: verifier.size, hash };
      }
      await rename(tmp, final);
      await fsyncDir(dir);
      this.remember(hash, verifier.size);
      return { status: 'created', size: verifier.size, hash };
    } catch (err) {
      if (file) await file.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw err;
    }
  }

  /**
   * A batch made durable with a few rounds of concurrent fsyncs instead of two serial ones
   * per block: every new block goes to its own temp file, fsynced 8 at a time; the fan-out
   * directories are made (a new one's parent fsynced once); the temps are renamed into
   * place; then each directory that got a block is fsynced once. A block still appears under
   * its name only complete, and only once all of them are durable does this resolve.
   */
  async putMany(blocks: readonly VerifiedBlock[]): Promise<PutResult[]> {
    const known = await mapBounded(blocks, STAT_CONCURRENCY, (block) => this.statFile(block.hash));
    const results: PutResult[] = blocks.map((block) => ({ status: 'exists', size: block.bytes.length }));
    const fresh = new Map<BlockHash, { bytes: Uint8Array; index: number; tmp: string | null; renamed: boolean }>();
    blocks.forEach((block, index) => {
      if (known[index] === null && !fresh.has(block.hash)) fresh.set(block.hash, { bytes: block.bytes, index, tmp: null, renamed: false });
    });
    if (fresh.size === 0) return results;
    const pending = [...fresh];
    try {
      await eachBounded(pending, SYNC_CONCURRENCY, async ([hash, entry]) => {
        const tmp = join(this.tmpDir, `${hash}.${randomBytes(6).toString('hex')}`);
        const file = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
        entry.tmp = tmp;
        try {
          await file.writeFile(entry.bytes);
          await file.sync();
        } finally {
          await file.close();
        }
      });

      const leafDirs = [...new Set(pending.map(([hash]) => dirname(this.pathOf(hash))))];
      const parents = new Set<string>();
      await eachBounded(leafDirs, SYNC_CONCURRENCY, async (dir) => {
        const created = await mkdir(dir, { recursive: true });
        if (created === undefined) return;
        // A new `ab/cd` needs its entry in `ab` durable; a new `ab` also needs its entry in the root.
        parents.add(dirname(dir));
        if (created !== dir) parents.add(this.root);
      });
      await eachBounded([...parents], SYNC_CONCURRENCY, fsyncDir);

      const filled = new Set<string>();
      await eachBounded(pending, SYNC_CONCURRENCY, async ([hash, entry]) => {
        if ((await this.statFile(hash)) !== null) return; // A concurrent upload of the same block won the race.
        await rename(entry.tmp!, this.pathOf(hash));
        entry.renamed = true;
        filled.add(dirname(this.pathOf(hash)));
      });
      await eachBounded([...filled], SYNC_CONCURRENCY, fsyncDir);
    } finally {
      await Promise.all(pending.map(([, entry]) => (entry.tmp && !entry.renamed ? unlink(entry.tmp).catch(() => {}) : undefined)));
    }
    for (const [hash, entry] of pending) {
      if (!entry.renamed) continue;
      this.remember(hash, entry.bytes.length);
      results[entry.index] = { status: 'created', size: entry.bytes.length };
    }
    return results;
  }

  /**
   * A block under IN_MEMORY_BELOW bytes comes back in memory, read whole on a reader thread
   * (SmallFileReadPool) together with the other reads asked for in the same turn. A read
   * shorter than asked for is the whole file: block files are complete once in place and
   * never change. A block known or found to be larger is streamed.
   */
  async openRead(hash: BlockHash): Promise<OpenedBlock | null> {
    const known = this.sizes.get(hash);
    if (known === undefined || known < IN_MEMORY_BELOW) {
      const read = await this.smallReads.read(this.pathOf(hash));
      if (read === 'missing') return null;
      if (read !== 'large') return { size: read.bytes.length, bytes: read.bytes };
    }
    return this.openOnLoop(hash);
  }

  /**
   * One open, one read and one close on a bare descriptor from the event loop (a file stream
   * per block costs many times the read); a larger block is streamed from the same descriptor.
   */
  private async openOnLoop(hash: BlockHash): Promise<OpenedBlock | null> {
    let fd: number;
    try {
      fd = await fsCall<number>((done) => fs.open(this.pathOf(hash), 'r', done));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    let streaming = false;
    try {
      const scratch = this.scratch.pop() ?? Buffer.allocUnsafeSlow(IN_MEMORY_BELOW);
      try {
        const read = await fsCall<number>((done) => fs.read(fd, scratch, 0, IN_MEMORY_BELOW, 0, done));
        if (read < IN_MEMORY_BELOW) return { size: read, bytes: Buffer.from(scratch.subarray(0, read)) };
      } finally {
        if (this.scratch.length < SCRATCH_KEPT) this.scratch.push(scratch);
      }
      const { size } = await fsCall<fs.Stats>((done) => fs.fstat(fd, done));
      const stream = fs.createReadStream('', { fd, start: 0, highWaterMark: READ_CHUNK, autoClose: true });
      streaming = true;
      return { size, stream };
    } finally {
      // Not awaited: nothing waits on the close of a descriptor only read from.
      if (!streaming) fs.close(fd, () => {});
    }
  }

  /**
   * Walks `ab/` one at a time (the temp directory is not a fan-out name), reading its `cd/`
   * directories and stat-ing their files GC_CONCURRENCY at a time: one call after another
   * would cost a thread-pool round trip per directory and per file.
   */
  async *list(): AsyncIterable<StoredBlock> {
    for (const top of (await readdirOrEmpty(this.root)).filter((name) => FAN_OUT.test(name)).sort()) {
      const leaves = (await readdirOrEmpty(join(this.root, top))).filter((name) => FAN_OUT.test(name)).sort();
      const files = (
        await mapBounded(leaves, GC_CONCURRENCY, async (leaf) =>
          (await readdirOrEmpty(join(this.root, top, leaf)))
            .filter((name) => BLOCK_NAME.test(name) && name.startsWith(top + leaf))
            .map((name) => join(this.root, top, leaf, name)),
        )
      ).flat();
      const found = await mapBounded(files, GC_CONCURRENCY, async (path): Promise<StoredBlock | null> => {
        try {
          const info = await lstat(path);
          return info.isFile() ? { hash: basename(path) as BlockHash, size: info.size, storedAt: info.mtimeMs } : null;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
          throw err;
        }
      });
      for (const block of found) if (block) yield block;
    }
  }

  /**
   * Unlinks the files. Not fsynced: a removal lost to a crash leaves a complete, unreferenced
   * block that the next pass removes again.
   */
  async remove(hashes: readonly BlockHash[]): Promise<void> {
    try {
      await mapBounded(hashes, GC_CONCURRENCY, async (hash) => {
        await unlink(this.pathOf(hash)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
      });
    } finally {
      // Also drops what checks running meanwhile would remember of the removed files.
      this.forgetSizes();
    }
  }

  forgetSizes(): void {
    this.sizes.clear();
    this.sizesEpoch += 1;
  }

  /** Names of files in the temp directory (tests check that uploads leave none behind). */
  async tempFiles(): Promise<string[]> {
    return readdir(this.tmpDir);
  }

  async close(): Promise<void> {
    this.sizes.clear();
    await this.smallReads.close();
  }

  private remember(hash: string, size: number): void {
    if (this.sizes.size >= SIZE_CACHE_LIMIT) {
      const oldest = this.sizes.keys().next().value;
      if (oldest !== undefined) this.sizes.delete(oldest);
    }
    this.sizes.set(hash, size);
  }
}

/** work(item) for every item, at most `limit` at once; after a failure no more start, and it throws once those running have finished. */
async function eachBounded<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | null = null;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++];
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw (failure as { error: unknown }).error;
}

/** A callback-style fs call as a promise (cheaper per call than fs/promises and its FileHandle). */
function fsCall<T>(call: (done: (err: NodeJS.ErrnoException | null, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => call((err, value) => (err ? reject(err) : resolve(value))));
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw err;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
