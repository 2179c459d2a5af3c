import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import type { BlockHash } from '../../protocol/index.ts';
import type { BlockBody, BlockStore, NamedPutResult, PutResult, StoredBlock, VerifiedBlock } from './block-store.ts';
import { BlockVerifier, verifyKnownBlock } from './block-verifier.ts';
import { mapBounded } from './bounded-map.ts';
import { guardReadStall, type NetworkBody } from './read-stall-guard.ts';
import { asStoreError, isS3NotFound, s3Status } from './s3-errors.ts';
import { Slots } from '../slots.ts';

export interface S3BlockStoreOptions {
  bucket: string;
  /** Key prefix, '' or ending in '/'; blocks go to `${prefix}blocks/ab/<hash>`. */
  prefix: string;
  /** HeadObject requests one statMany() keeps outstanding. */
  statConcurrency?: number;
  /** How many sizes of blocks known to be stored are remembered. */
  sizeCacheLimit?: number;
  /** A download whose endpoint sends nothing for this long, while the reader waits, is cut. */
  readStallMs?: number;
  /** Keys per DeleteObjects request (S3 allows at most 1,000). */
  deleteBatch?: number;
  /**
   * Uploads received into memory at once (each up to one block); more wait, unread, for a
   * turn, so a burst of uploads costs at most this many blocks of memory.
   */
  uploadsInMemory?: number;
}

const DEFAULT_STAT_CONCURRENCY = 32;
const DEFAULT_SIZE_CACHE_LIMIT = 100_000;
const DEFAULT_READ_STALL_MS = 30_000;
/** PutObject requests one putMany() keeps outstanding. */
const PUT_MANY_CONCURRENCY = 8;
/** DeleteObjects requests (or single DeleteObjects, where batches are refused) block GC keeps outstanding. */
const DELETE_CONCURRENCY = 8;
/** Keys per DeleteObjects request: S3's own limit. */
const DELETE_BATCH = 1000;
/** 64 × 4 MiB: 256 MiB at most of upload buffers per instance. */
const DEFAULT_UPLOADS_IN_MEMORY = 64;

/**
 * Blocks as objects in an S3-compatible bucket, one object per hash. An upload is received
 * into memory (one block, at most `maxBytes`) while it is hashed, and sent to S3 only once
 * its SHA-256 is verified, so the bucket never holds a wrong or partial block: S3 makes a
 * PUT visible whole or not at all. Blocks are immutable, so a known block is not sent again
 * and the sizes of stored blocks can be cached; absence never is, since another instance
 * may store the block at any moment.
 */
export class S3BlockStore implements BlockStore {
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly statConcurrency: number;
  private readonly sizeCacheLimit: number;
  private readonly readStallMs: number;
  private readonly deleteBatch: number;
  private readonly uploadSlots: Slots;
  /**
   * Sizes of blocks known to be stored (insertion order = eviction order). Only GC removes
   * blocks: entries go when this instance removes one or learns that GC ran (forgetSizes).
   */
  private readonly sizes = new Map<string, number>();
  /** Grows at each forgetSizes: a request that began before must not fill the cache. */
  private sizesEpoch = 0;
  /** False once the store refused a DeleteObjects request as unsupported. */
  private batchDeletes = true;
  /** HeadObject requests under way, shared by every caller asking about the same block. */
  private readonly statsInFlight = new Map<string, Promise<number | null>>();
  /** PutObject requests under way: a second upload of the same block waits for the first. */
  private readonly uploadsInFlight = new Map<string, Promise<void>>();

  private constructor(
    private readonly client: S3Client,
    options: S3BlockStoreOptions,
  ) {
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.statConcurrency = options.statConcurrency ?? DEFAULT_STAT_CONCURRENCY;
    this.sizeCacheLimit = options.sizeCacheLimit ?? DEFAULT_SIZE_CACHE_LIMIT;
    this.readStallMs = options.readStallMs ?? DEFAULT_READ_STALL_MS;
    this.deleteBatch = Math.min(Math.max(1, options.deleteBatch ?? DELETE_BATCH), DELETE_BATCH);
    this.uploadSlots = new Slots(options.uploadsInMemory ?? DEFAULT_UPLOADS_IN_MEMORY);
  }

  /**
   * Checks that the bucket exists and these credentials reach it, so a misconfiguration
   * stops the server at start instead of failing its first upload. The store owns `client`
   * from here on and destroys it on close (or at once, when the check fails).
   */
  static async open(client: S3Client, options: S3BlockStoreOptions): Promise<S3BlockStore> {
    try {
      await client.send(new HeadBucketCommand({ Bucket: options.bucket }));
    } catch (err) {
      client.destroy();
      const status = s3Status(err);
      if (status === 404 || (err as { name?: unknown })?.name === 'NoSuchBucket') {
        throw new Error(`BLOCK_STORE: bucket "${options.bucket}" does not exist (create it first)`, { cause: err });
      }
      if (status === 403 || status === 401) {
        throw new Error(`BLOCK_STORE: access to bucket "${options.bucket}" was denied (check the credentials)`, { cause: err });
      }
      const detail = err instanceof Error ? err.message : String(err);
      throw new Error(`BLOCK_STORE: cannot reach bucket "${options.bucket}": ${detail}`, { cause: err });
    }
    return new S3BlockStore(client, options);
  }

  keyOf(hash: BlockHash): string {
    return `${this.prefix}blocks/${hash.slice(0, 2)}/${hash}`;
  }

  async stat(hash: BlockHash): Promise<number | null> {
    const cached = this.sizes.get(hash);
    if (cached !== undefined) return cached;
    let pending = this.statsInFlight.get(hash);
    if (!pending) {
      const started: Promise<number | null> = this.headObject(hash).finally(() => {
        // forgetSizes may have replaced it with a newer check meanwhile.
        if (this.statsInFlight.get(hash) === started) this.statsInFlight.delete(hash);
      });
      pending = started;
      this.statsInFlight.set(hash, pending);
    }
    return pending;
  }

  async statMany(hashes: readonly BlockHash[]): Promise<(number | null)[]> {
    return mapBounded(hashes, this.statConcurrency, (hash) => this.stat(hash));
  }

  async put(hash: BlockHash, body: BlockBody, maxBytes: number): Promise<PutResult> {
    // Asked of S3 even when cached: a size cached before another instance's GC removed the
    // block would make the upload store nothing, and the commit ask for it again and again.
    const known = await this.headObject(hash);
    const verifier = new BlockVerifier(hash, maxBytes);
    if (known !== null) return verifyKnownBlock(verifier, body);

    return this.receive(body, verifier, async (bytes) => {
      verifier.verify();
      return { status: await this.upload(hash, bytes), size: bytes.length };
    });
  }

  /** Held in memory until it ends (S3 files an object under its name), then sent like `put`'s. */
  async putUnnamed(body: BlockBody, maxBytes: number): Promise<NamedPutResult> {
    const verifier = new BlockVerifier(null, maxBytes);
    return this.receive(body, verifier, async (bytes) => {
      const hash = verifier.name();
      if ((await this.headObject(hash)) !== null) return { status: 'exists', size: bytes.length, hash };
      return { status: await this.upload(hash, bytes), size: bytes.length, hash };
    });
  }

  /**
   * Reads `body` into memory through `verifier`, then hands the bytes to `store`. The body is
   * not read until a slot is free: the client's bytes wait in TCP meanwhile.
   */
  private async receive<Result>(body: BlockBody, verifier: BlockVerifier, store: (bytes: Buffer) => Promise<Result>): Promise<Result> {
    const release = await this.uploadSlots.acquire();
    try {
      const chunks: Buffer[] = [];
      await body((chunk) => {
        verifier.update(chunk);
        chunks.push(chunk);
      });
      const bytes = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, verifier.size);
      chunks.length = 0;
      return await store(bytes);
    } finally {
      release();
    }
  }

  /**
   * A batch of verified blocks, already in memory (the caller bounds how many batches it
   * holds): each one not known to be stored is sent with its own PutObject, 8 at a time.
   */
  async putMany(blocks: readonly VerifiedBlock[]): Promise<PutResult[]> {
    return mapBounded(blocks, PUT_MANY_CONCURRENCY, async ({ hash, bytes }): Promise<PutResult> => {
      if ((await this.headObject(hash)) !== null) return { status: 'exists', size: bytes.length };
      const body = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return { status: await this.upload(hash, body), size: bytes.length };
    });
  }

  /** Uploads buffered in memory now (tests, metrics). */
  get uploadsBuffered(): number {
    return this.uploadSlots.inUse;
  }

  async openRead(hash: BlockHash): Promise<{ size: number; stream: Readable } | null> {
    const epoch = this.sizesEpoch;
    let response;
    try {
      response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(hash) }));
    } catch (err) {
      if (isS3NotFound(err)) return null;
      throw asStoreError(err, `reading block ${hash}`);
    }
    const stream = response.Body;
    if (!(stream instanceof Readable)) throw new Error(`S3 GetObject for ${hash} returned no body stream`);
    let size: number;
    try {
      size = storedSize(response.ContentLength, 'GetObject', hash);
    } catch (err) {
      stream.destroy();
      throw err;
    }
    if (epoch === this.sizesEpoch) this.remember(hash, size);
    guardReadStall(stream as NetworkBody, this.readStallMs);
    return { size, stream };
  }

  /** ListObjectsV2 over `${prefix}blocks/`, a page (up to 1000 keys) at a time. */
  async *list(): AsyncIterable<StoredBlock> {
    const root = `${this.prefix}blocks/`;
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: root, ContinuationToken: token }));
      } catch (err) {
        throw asStoreError(err, 'listing blocks');
      }
      for (const object of page.Contents ?? []) {
        const hash = object.Key === undefined ? null : blockOfKey(object.Key.slice(root.length));
        if (hash === null || object.LastModified === undefined || typeof object.Size !== 'number') continue;
        // S3 lists LastModified to the whole second: take the end of that second, so a block
        // never looks older than it is (the grace period is never cut short).
        const modified = object.LastModified.getTime();
        yield { hash, size: object.Size, storedAt: modified % 1000 === 0 ? modified + 999 : modified };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * DeleteObjects, 1,000 keys a request: a GC pass removing a million blocks makes a thousand
   * requests, not a million. A store that does not implement the batch call (some
   * S3-compatible ones answer 501 or 405) gets one DeleteObject per block from then on.
   */
  async remove(hashes: readonly BlockHash[]): Promise<void> {
    const batches: BlockHash[][] = [];
    for (let i = 0; i < hashes.length; i += this.deleteBatch) batches.push(hashes.slice(i, i + this.deleteBatch));
    try {
      await mapBounded(batches, DELETE_CONCURRENCY, async (batch) => {
        if (this.batchDeletes) {
          try {
            await this.removeBatch(batch);
            return;
          } catch (err) {
            if (!isBatchDeleteRefused(err)) throw asStoreError(err, `removing ${batch.length} blocks`);
            this.batchDeletes = false;
          }
        }
        await mapBounded(batch, DELETE_CONCURRENCY, (hash) => this.removeOne(hash));
      });
    } finally {
      this.forgetSizes();
    }
  }

  private async removeBatch(batch: readonly BlockHash[]): Promise<void> {
    const answer = await this.client.send(
      new DeleteObjectsCommand({
        Bucket: this.bucket,
        Delete: { Objects: batch.map((hash) => ({ Key: this.keyOf(hash) })), Quiet: true },
      }),
    );
    // Quiet: only failures are listed. An absent key is not one (S3 reports it deleted).
    const failed = (answer.Errors ?? []).filter((error) => error.Code !== 'NoSuchKey');
    if (failed.length > 0) {
      const first = failed[0];
      throw new Error(`S3 refused to delete ${failed.length} of ${batch.length} blocks, e.g. ${first.Key}: ${first.Code} ${first.Message ?? ''}`.trim());
    }
  }

  private async removeOne(hash: BlockHash): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(hash) }));
    } catch (err) {
      if (!isS3NotFound(err)) throw asStoreError(err, `removing block ${hash}`);
    }
  }

  forgetSizes(): void {
    this.sizes.clear();
    // A HeadObject under way may have been answered before a removal: new checks ask again.
    this.statsInFlight.clear();
    this.sizesEpoch += 1;
  }

  async close(): Promise<void> {
    this.sizes.clear();
    this.client.destroy();
  }

  private async headObject(hash: BlockHash): Promise<number | null> {
    const epoch = this.sizesEpoch;
    let response;
    try {
      response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(hash) }));
    } catch (err) {
      if (isS3NotFound(err)) return null;
      throw asStoreError(err, `checking block ${hash}`);
    }
    // Blocks are never empty, so an empty object is no block: count it missing, and the next
    // upload replaces it. (s3rver, the test server, shows an object while its PUT is still
    // writing it; a re-upload after block GC meeting a commit's check made that visible.)
    if (response.ContentLength === 0) return null;
    const size = storedSize(response.ContentLength, 'HeadObject', hash);
    if (epoch === this.sizesEpoch) this.remember(hash, size);
    return size;
  }

  /** Sends a verified block, unless another upload of it in this process gets there first. */
  private async upload(hash: BlockHash, bytes: Buffer): Promise<PutResult['status']> {
    const running = this.uploadsInFlight.get(hash);
    if (running) {
      try {
        await running;
        return 'exists';
      } catch {
        // That upload failed; this one tries on its own.
      }
    }
    const sending = this.putObject(hash, bytes);
    this.uploadsInFlight.set(hash, sending);
    try {
      await sending;
    } finally {
      if (this.uploadsInFlight.get(hash) === sending) this.uploadsInFlight.delete(hash);
    }
    this.remember(hash, bytes.length);
    return 'created';
  }

  private async putObject(hash: BlockHash, bytes: Buffer): Promise<void> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.keyOf(hash),
          Body: bytes,
          ContentLength: bytes.length,
          ContentType: 'application/octet-stream',
          // The hash is already verified: S3 checks the bytes it receives against it.
          ChecksumSHA256: Buffer.from(hash, 'hex').toString('base64'),
        }),
      );
    } catch (err) {
      throw asStoreError(err, `storing block ${hash}`);
    }
  }

  private remember(hash: string, size: number): void {
    if (this.sizes.has(hash)) return;
    if (this.sizes.size >= this.sizeCacheLimit) {
      const oldest = this.sizes.keys().next().value;
      if (oldest !== undefined) this.sizes.delete(oldest);
    }
    this.sizes.set(hash, size);
  }
}

/** `ab/<hash>` (the key below `blocks/`) → the hash, or null for anything else. */
function blockOfKey(rest: string): BlockHash | null {
  const match = /^([0-9a-f]{2})\/(\1[0-9a-f]{62})$/.exec(rest);
  return match ? (match[2] as BlockHash) : null;
}

/** The object's byte count from S3's Content-Length, checked before anyone relies on it. */
function storedSize(contentLength: unknown, operation: string, hash: BlockHash): number {
  if (typeof contentLength !== 'number' || !Number.isSafeInteger(contentLength) || contentLength <= 0) {
    throw new Error(`S3 ${operation} for block ${hash} gave no valid Content-Length (${String(contentLength)})`);
  }
  return contentLength;
}

/** A store without the multi-object delete: 501 NotImplemented or 405 MethodNotAllowed. */
function isBatchDeleteRefused(err: unknown): boolean {
  const status = s3Status(err);
  const name = (err as { name?: unknown } | null)?.name;
  return status === 501 || status === 405 || name === 'NotImplemented' || name === 'MethodNotAllowed';
}
