import { parseBlockHash, type BlockHash } from './block-hash.ts';
import { ValidationError } from './errors.ts';
import { expectArray, expectOnlyKeys, expectRecord } from './fields.ts';
import { parseCommitRequest, parseCursor, type CommitRequest } from './journal.ts';
import { MAX_BLOCK_BATCH, MAX_COMMIT_BATCH } from './limits.ts';

/** Bodies of the batch routes: POST /api/v1/ns/:ns/commits and POST /api/v1/ns/:ns/blocks. */

export interface CommitBatchRequest {
  commits: CommitRequest[];
}

export interface CommitBatchResponse {
  /** One per commit, in request order: consecutive. */
  sjids: number[];
}

export interface BlockBatchRequest {
  hashes: BlockHash[];
}

/** 1 … MAX_COMMIT_BATCH commit bodies, each checked as a single commit (errors name `commits[i].…`). */
export function parseCommitBatchRequest(value: unknown): CommitBatchRequest {
  const record = expectRecord(value, 'body');
  expectOnlyKeys(record, 'body', ['commits']);
  const items = expectArray(record.commits, 'commits', MAX_COMMIT_BATCH);
  if (items.length === 0) throw new ValidationError('commits', 'must have at least one item');
  return { commits: items.map((item, i) => parseCommitRequest(item, `commits[${i}]`)) };
}

/** 1 … MAX_BLOCK_BATCH distinct block hashes. */
export function parseBlockBatchRequest(value: unknown): BlockBatchRequest {
  const record = expectRecord(value, 'body');
  expectOnlyKeys(record, 'body', ['hashes']);
  const items = expectArray(record.hashes, 'hashes', MAX_BLOCK_BATCH);
  if (items.length === 0) throw new ValidationError('hashes', 'must have at least one item');
  const firstIndex = new Map<BlockHash, number>();
  const hashes = items.map((item, i) => {
    const hash = parseBlockHash(item, `hashes[${i}]`);
    const earlier = firstIndex.get(hash);
    // A repeat would cost the server a second read and the client nothing: refuse it.
    if (earlier !== undefined) throw new ValidationError(`hashes[${i}]`, `repeats hashes[${earlier}]`);
    firstIndex.set(hash, i);
    return hash;
  });
  return { hashes };
}

/** A batch commit's answer: exactly `count` sjids, consecutive, in request order. */
export function parseCommitBatchResponse(value: unknown, count: number): CommitBatchResponse {
  const record = expectRecord(value, 'response');
  const sjids = expectArray(record.sjids, 'sjids', count).map((sjid, i) => parseCursor(sjid, `sjids[${i}]`));
  if (sjids.length !== count) throw new ValidationError('sjids', `must have ${count} items, one per commit`);
  sjids.forEach((sjid, i) => {
    if (sjid < 1 || (i > 0 && sjid !== sjids[i - 1] + 1)) throw new ValidationError(`sjids[${i}]`, 'must follow the previous sjid');
  });
  return { sjids };
}
