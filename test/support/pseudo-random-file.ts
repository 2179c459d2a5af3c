import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { ServerApi } from '../../src/engine/server-api.ts';
import { MAX_BLOCK_SIZE, parseFilePath, type BlockHash, type NamespaceId } from '../../src/protocol/index.ts';

/**
 * Big test files made on the fly, block by block, from a seed: the same seed gives the same
 * bytes (AES-256-CTR keystream, so incompressible and about 1 GB/s), and no test ever holds
 * more than one 4 MiB block of them.
 */

export class PseudoRandomFile {
  private readonly key: Buffer;

  constructor(
    readonly seed: string,
    readonly size: number,
  ) {
    this.key = createHash('sha256').update(seed).digest();
  }

  get blockCount(): number {
    return Math.ceil(this.size / MAX_BLOCK_SIZE);
  }

  /** Block `index` (4 MiB, the last one shorter). */
  block(index: number): Buffer {
    const length = Math.min(MAX_BLOCK_SIZE, this.size - index * MAX_BLOCK_SIZE);
    const iv = Buffer.alloc(16);
    iv.writeUInt32BE(index, 0);
    const cipher = createCipheriv('aes-256-ctr', this.key, iv);
    return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
  }

  *blocks(): Generator<Buffer> {
    for (let index = 0; index < this.blockCount; index++) yield this.block(index);
  }

  /** The block hashes of the file, in order (its journal entry's `blocks`). */
  blockHashes(): BlockHash[] {
    const hashes: BlockHash[] = [];
    for (const bytes of this.blocks()) hashes.push(createHash('sha256').update(bytes).digest('hex') as BlockHash);
    return hashes;
  }

  /** SHA-256 of the whole file. */
  sha256(): string {
    const hash = createHash('sha256');
    for (const bytes of this.blocks()) hash.update(bytes);
    return hash.digest('hex');
  }

  async writeTo(path: string): Promise<void> {
    const out = createWriteStream(path);
    for (const bytes of this.blocks()) {
      if (!out.write(bytes)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
  }

  /** Uploads every block with `api` (a member's) and commits the file at `path`; returns the hashes. */
  async commitTo(api: ServerApi, ns: NamespaceId, path: string): Promise<BlockHash[]> {
    const hashes: BlockHash[] = [];
    let next = 0;
    // A few PUTs at once: the server fsyncs each block, so one at a time idles the disk.
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < this.blockCount) {
        const index = next++;
        const bytes = this.block(index);
        hashes[index] = createHash('sha256').update(bytes).digest('hex') as BlockHash;
        await api.putBlock(hashes[index], bytes);
      }
    }));
    await api.commit(ns, { path: parseFilePath(path), size: this.size, mtime: Date.now(), blocks: hashes, deleted: false });
    return hashes;
  }
}
