import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { BlockHash } from '../../protocol/index.ts';
import type { BlockBody, BlockStore, PutResult } from './block-store.ts';
import { BlockVerifier, verifyKnownBlock } from './block-verifier.ts';
import { mapBounded } from './bounded-map.ts';

const STAT_CONCURRENCY = 64;
const SIZE_CACHE_LIMIT = 100_000;
const READ_CHUNK = 256 * 1024;

/**
 * Blocks as files under `${root}/ab/cd/<hash>`. An upload goes to a temp file in
 * `${root}/tmp`, is fsynced, then renamed into place (and the directory fsynced), so a
 * block file is either absent or complete. Temp files left by a crash are removed at open.
 */
export class FsBlockStore implements BlockStore {
  private readonly tmpDir: string;
  /** Sizes of stored blocks; blocks are immutable and never removed, so entries stay true. */
  private readonly sizes = new Map<string, number>();

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
    try {
      const info = await stat(this.pathOf(hash));
      this.remember(hash, info.size);
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
    const known = await this.stat(hash);
    const verifier = new BlockVerifier(hash, maxBytes);

    if (known !== null) return verifyKnownBlock(verifier, body);

    const tmp = join(this.tmpDir, `${hash}.${randomBytes(6).toString('hex')}`);
    let file: FileHandle | null = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
    try {
      await body(async (chunk) => {
        verifier.update(chunk);
        await file!.write(chunk);
      });
      verifier.verify();
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
      if ((await this.stat(hash)) !== null) {
        // A concurrent upload of the same block won the race.
        await unlink(tmp);
        return { status: 'exists', size: verifier.size };
      }
      await rename(tmp, final);
      await fsyncDir(dir);
      this.remember(hash, verifier.size);
      return { status: 'created', size: verifier.size };
    } catch (err) {
      if (file) await file.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw err;
    }
  }

  async openRead(hash: BlockHash): Promise<{ size: number; stream: Readable } | null> {
    let file: FileHandle;
    try {
      file = await open(this.pathOf(hash), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      const { size } = await file.stat();
      return { size, stream: file.createReadStream({ highWaterMark: READ_CHUNK, autoClose: true }) };
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  /** Names of files in the temp directory (tests check that uploads leave none behind). */
  async tempFiles(): Promise<string[]> {
    return readdir(this.tmpDir);
  }

  async close(): Promise<void> {
    this.sizes.clear();
  }

  private remember(hash: string, size: number): void {
    if (this.sizes.size >= SIZE_CACHE_LIMIT) {
      const oldest = this.sizes.keys().next().value;
      if (oldest !== undefined) this.sizes.delete(oldest);
    }
    this.sizes.set(hash, size);
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
