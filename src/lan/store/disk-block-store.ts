import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { LocalBlockStore } from '../../engine/types.ts';
import { MAX_BLOCK_SIZE, isBlockHash, type BlockHash } from '../../protocol/index.ts';
import { sha256Hex } from './node-sha256.ts';
import { sharedSha256Worker } from './sha256-worker.ts';

/**
 * Blocks as files under `<root>/ab/<hash>`: the directory is the block index. A block is
 * written to `<root>/tmp`, fsynced and renamed into place (then the directory fsynced), so
 * a block file is complete or absent and a killed daemon never trusts a torn one. Blocks no
 * live file uses any more are removed by the daemon's block GC (block-gc.ts) after a grace.
 */
export class DiskBlockStore implements LocalBlockStore {
  private readonly known = new Set<BlockHash>();
  private readonly tmpDir: string;
  private readonly madeDirs = new Set<string>();

  private constructor(
    readonly root: string,
    private readonly durable: boolean,
  ) {
    this.tmpDir = join(root, 'tmp');
  }

  /**
   * `durable: false` (a folder-mode daemon, whose files are the durable copy): blocks are not
   * fsynced one by one, and every read checks the hash instead, so a block torn by a power cut
   * is removed and reported absent rather than served. On this kind of machine (2 cores,
   * shared disk) a 4 MiB write + fsync took 150–235 ms against 85 ms without, and the fsync
   * held the peer's fetch slot: at 64 blocks per 256 MiB it capped the receiving rate.
   */
  static async open(root: string, options: { durable?: boolean } = {}): Promise<DiskBlockStore> {
    const store = new DiskBlockStore(root, options.durable ?? true);
    await mkdir(root, { recursive: true, mode: 0o700 });
    // Temp files are writes a crash cut short: never blocks.
    await rm(store.tmpDir, { recursive: true, force: true });
    await mkdir(store.tmpDir, { mode: 0o700 });
    return store;
  }

  pathOf(hash: BlockHash): string {
    return join(this.root, hash.slice(0, 2), hash);
  }

  async hasBlocks(hashes: readonly BlockHash[]): Promise<Set<BlockHash>> {
    const found = new Set<BlockHash>();
    for (const hash of hashes) {
      if (this.known.has(hash)) found.add(hash);
      else if (await this.exists(hash)) {
        this.known.add(hash);
        found.add(hash);
      }
    }
    return found;
  }

  /** Verifies the hash itself: a block from any source is checked once more before it is kept. */
  async putBlock(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    if (!isBlockHash(hash)) throw new Error('not a block hash');
    if (sha256Hex(bytes) !== hash) throw new Error(`block bytes do not hash to ${hash.slice(0, 12)}…`);
    await this.storeChecked(hash, bytes);
  }

  /**
   * The engine's one-step check and store: one SHA-256 per block instead of the engine's and
   * putBlock's two (a quarter of the receiving daemon's main-thread time at 256 MiB). Stores
   * only bytes that hash to `hash`; resolves with the hash they have.
   */
  async putVerified(hash: BlockHash, bytes: Uint8Array): Promise<BlockHash> {
    if (!isBlockHash(hash)) throw new Error('not a block hash');
    // On the hash worker when the bytes are in a shared LAN buffer (sha256-worker.ts).
    const actual = await sharedSha256Worker.hash(bytes);
    if (actual === hash) await this.storeChecked(hash, bytes);
    return actual;
  }

  /** Stores bytes the caller has just hashed to `hash` itself (the folder store: one hash per block). */
  async putHashed(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    if (!isBlockHash(hash)) throw new Error('not a block hash');
    await this.storeChecked(hash, bytes);
  }

  private async storeChecked(hash: BlockHash, bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0 || bytes.length > MAX_BLOCK_SIZE) throw new Error(`block of ${bytes.length} bytes is out of range`);
    if (this.known.has(hash) || (await this.exists(hash))) {
      this.known.add(hash);
      // Stored again now: the block GC's grace starts over (a local file cut into blocks it
      // already had, say, is about to be committed).
      await utimes(this.pathOf(hash), new Date(), new Date()).catch(() => undefined);
      return;
    }
    const dir = join(this.root, hash.slice(0, 2));
    if (!this.madeDirs.has(dir)) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      this.madeDirs.add(dir);
    }
    const temp = join(this.tmpDir, `${hash}.${randomBytes(6).toString('hex')}`);
    const file = await open(temp, 'wx', 0o600);
    try {
      await file.writeFile(bytes);
      if (this.durable) await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, this.pathOf(hash));
    if (this.durable) await fsyncDir(dir);
    this.known.add(hash);
  }

  async getBlock(hash: BlockHash): Promise<Uint8Array | null> {
    if (!isBlockHash(hash)) return null;
    try {
      const bytes = new Uint8Array(await readFile(this.pathOf(hash)));
      if (!this.durable && sha256Hex(bytes) !== hash) {
        await this.remove(hash);
        return null;
      }
      return bytes;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  /** Every stored block (for tests and the cache box's report). */
  async list(): Promise<BlockHash[]> {
    const hashes: BlockHash[] = [];
    for (const prefix of await readdir(this.root)) {
      if (!/^[0-9a-f]{2}$/.test(prefix)) continue;
      for (const name of await readdir(join(this.root, prefix))) if (isBlockHash(name)) hashes.push(name);
    }
    return hashes;
  }

  /** Each stored block with its size and when it was stored (the file's mtime). */
  async *entries(): AsyncGenerator<{ hash: BlockHash; size: number; storedAt: number }> {
    for (const prefix of await readdir(this.root)) {
      if (!/^[0-9a-f]{2}$/.test(prefix)) continue;
      for (const name of await readdir(join(this.root, prefix))) {
        if (!isBlockHash(name)) continue;
        try {
          const info = await stat(join(this.root, prefix, name));
          yield { hash: name, size: info.size, storedAt: info.mtimeMs };
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        }
      }
    }
  }

  /** Deletes a block; false if it was not there. */
  async remove(hash: BlockHash): Promise<boolean> {
    this.known.delete(hash);
    try {
      await unlink(this.pathOf(hash));
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }

  private async exists(hash: BlockHash): Promise<boolean> {
    try {
      return (await stat(this.pathOf(hash))).isFile();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }
}

/** Makes a rename in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
