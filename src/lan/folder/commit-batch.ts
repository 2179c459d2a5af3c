import { BATCHED_BLOCK_MAX, BlockBatchSender } from '../../engine/block-batches.ts';
import { CommitConflictError } from '../../engine/commit-conflict.ts';
import { ApiError } from '../../engine/server-api.ts';
import type { LocalBlockStore, UploadApi } from '../../engine/types.ts';
import { MAX_COMMIT_BATCH, MAX_MISSING_QUERY, type BlockHash, type CommitRequest, type NamespaceId } from '../../protocol/index.ts';

/** What became of one commit of a batch. */
export type BatchedCommitOutcome =
  | { status: 'committed'; sjid: number }
  | { status: 'conflict'; error: CommitConflictError }
  /** A deletion a server without conditional commits found not live: gone already. */
  | { status: 'not_live' }
  /** `stillWanted` said no before it was sent. */
  | { status: 'dropped' };

export interface BatchedCommit {
  request: CommitRequest;
  /** Asked just before the batch goes out: a remote version may have arrived while blocks went up. */
  stillWanted?: () => boolean;
  settle: (outcome: BatchedCommitOutcome) => void;
}

export interface FolderCommitBatchOptions {
  ns: NamespaceId;
  api: UploadApi;
  /** Where the blocks of queued commits are (cut from the folder's files). */
  blocks: LocalBlockStore;
  maxCommits?: number;
  /** Bytes of blocks queued commits name before `full` says to send (a big file alone may pass it). */
  maxBytes?: number;
  /** Runs the settling of a committed batch (synchronous callbacks) at once, e.g. in one state transaction. */
  settleTogether?: (settleAll: () => void) => void;
}

/** How often one batch may be answered `need` (blocks GC'd meanwhile) before the batch fails. */
const NEED_ROUNDS = 3;
const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;

/**
 * The daemon's local changes, sent the way the browser sends a drop of small files: the
 * blocks the server lacks in batch uploads (large blocks as single PUTs), then up to 1,000
 * commits in one transaction. A folder of 10,000 small files costs tens of requests, not
 * 20,000. A conflicting element (its `parent` moved on) is settled as a conflict and the rest
 * of the batch is sent again without it, so one file edited elsewhere holds back no other.
 */
export class FolderCommitBatch {
  private pending: BatchedCommit[] = [];
  private pendingBytes = 0;
  private readonly maxCommits: number;
  private readonly maxBytes: number;

  constructor(private readonly options: FolderCommitBatchOptions) {
    this.maxCommits = Math.min(options.maxCommits ?? MAX_COMMIT_BATCH, MAX_COMMIT_BATCH);
    this.maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  }

  add(commit: BatchedCommit): void {
    this.pending.push(commit);
    this.pendingBytes += commit.request.size;
  }

  /** Time to `flush()`: the batch holds as many commits, or bytes, as one round should. */
  get full(): boolean {
    return this.pending.length >= this.maxCommits || this.pendingBytes >= this.maxBytes;
  }

  get size(): number {
    return this.pending.length;
  }

  /** Uploads what the server lacks, commits, and settles every queued commit. */
  async flush(): Promise<void> {
    const queued = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (queued.length === 0) return;
    await this.uploadMissing([...new Set(queued.flatMap((commit) => commit.request.blocks))]);
    let remaining = queued.filter((commit) => {
      if (commit.stillWanted === undefined || commit.stillWanted()) return true;
      commit.settle({ status: 'dropped' });
      return false;
    });
    let needRounds = 0;
    while (remaining.length > 0) {
      try {
        const result = await this.options.api.commitBatch(this.options.ns, remaining.map((commit) => commit.request));
        if ('need' in result) {
          if (++needRounds > NEED_ROUNDS) throw new Error(`the server still lacks ${result.need.length} blocks after ${NEED_ROUNDS} uploads`);
          await this.upload(result.need);
          continue;
        }
        const committed = remaining;
        const settleAll = () => {
          for (const [i, sjid] of result.sjids.entries()) committed[i].settle({ status: 'committed', sjid });
        };
        if (this.options.settleTogether) this.options.settleTogether(settleAll);
        else settleAll();
        return;
      } catch (error) {
        if (error instanceof CommitConflictError && remaining[error.index] !== undefined) {
          remaining[error.index].settle({ status: 'conflict', error });
          remaining = remaining.filter((_, i) => i !== error.index);
          continue;
        }
        if (error instanceof ApiError && error.code === 'not_live') {
          // A server without conditional commits names no index: settle the rest one by one.
          await this.commitOneByOne(remaining);
          return;
        }
        throw error;
      }
    }
  }

  private async commitOneByOne(commits: readonly BatchedCommit[]): Promise<void> {
    for (const commit of commits) {
      try {
        const result = await this.options.api.commit(this.options.ns, commit.request);
        if ('need' in result) throw new Error(`the server lacks ${result.need.length} blocks of ${commit.request.path}`);
        commit.settle({ status: 'committed', sjid: result.sjid });
      } catch (error) {
        if (error instanceof CommitConflictError) commit.settle({ status: 'conflict', error });
        else if (error instanceof ApiError && error.code === 'not_live') commit.settle({ status: 'not_live' });
        else throw error;
      }
    }
  }

  private async uploadMissing(hashes: readonly BlockHash[]): Promise<void> {
    for (let i = 0; i < hashes.length; i += MAX_MISSING_QUERY) {
      await this.upload(await this.options.api.missingBlocks(hashes.slice(i, i + MAX_MISSING_QUERY)));
    }
  }

  private async upload(hashes: readonly BlockHash[]): Promise<void> {
    const sender = new BlockBatchSender(this.options.api);
    for (const hash of hashes) {
      const bytes = await this.options.blocks.getBlock(hash);
      if (!bytes) throw new Error(`block ${hash.slice(0, 12)}… vanished from the block cache`);
      if (bytes.length <= BATCHED_BLOCK_MAX) await sender.add({ hash, bytes });
      else await this.options.api.putBlock(hash, bytes);
    }
    await sender.finish();
  }
}
