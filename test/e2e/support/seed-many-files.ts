import { createHash } from 'node:crypto';
import { BlockBatchSender } from '../../../src/engine/block-batches.ts';
import { ServerApi } from '../../../src/engine/server-api.ts';
import { inviteFromLink, type BlockHash, type CommitRequest, type FilePath, type NamespaceId } from '../../../src/protocol/index.ts';

/**
 * A workspace of many small files (0.2–3 KiB each, distinct bytes), filled over the HTTP API
 * without a browser: for the folder-view tests and the many-files bench.
 */

export interface ManyFilesWorkspace {
  namespaceId: NamespaceId;
  shareLink: string;
  token: string;
  files: number;
  totalBytes: number;
}

/** Single block uploads in flight, against a server without batch uploads. */
const SEED_PARALLEL = 16;
const COMMIT_BATCH = 1000;

export interface SeedManyFilesOptions {
  /** Where file i goes (default: 10 top folders × 10 subfolders). */
  pathOf?: (index: number) => string;
  log?: (line: string) => void;
}

/** Deterministic tree: 10 top folders × 10 subfolders × files spread among them. */
export function manyFilesPath(index: number): string {
  const top = index % 10;
  const sub = Math.floor(index / 10) % 10;
  return `project-${top}/part-${sub}/file-${String(index).padStart(6, '0')}.txt`;
}

/** File i's bytes: 200–3072 printable bytes, deterministic, distinct per file. */
export function manyFilesBytes(index: number): Buffer {
  return printableBytes(index + 1, 200 + ((index * 2654435761) % 2873));
}

/** `size` printable bytes from an xorshift stream: deterministic, distinct per `seed`. */
export function printableBytes(seed: number, size: number): Buffer {
  const bytes = Buffer.alloc(size);
  let state = seed * 0x9e3779b1;
  for (let i = 0; i < size; i++) {
    state = (state ^ (state << 13)) >>> 0;
    state = (state ^ (state >>> 17)) >>> 0;
    state = (state ^ (state << 5)) >>> 0;
    bytes[i] = 32 + (state % 95);
  }
  return bytes;
}

/** Creates a workspace of `count` small files over the HTTP API (`baseUrl`: how this process reaches the server). */
export async function seedManyFiles(baseUrl: string, count: number, options: SeedManyFilesOptions = {}): Promise<ManyFilesWorkspace> {
  const pathOf = options.pathOf ?? manyFilesPath;
  const log = options.log ?? (() => undefined);
  const created = await new ServerApi(baseUrl).createWorkspace(`many files ${count}`);
  const api = new ServerApi(baseUrl, created.token);
  const invite = inviteFromLink(created.inviteUrl)!;
  let totalBytes = 0;
  const began = performance.now();
  const requests: CommitRequest[] = new Array(count);
  // Blocks first, in batch uploads (two in flight); then the files in batch commits of 1,000 (one transaction each).
  const sender = new BlockBatchSender(api, { putsInFlight: SEED_PARALLEL });
  for (let index = 0; index < count; index++) {
    const bytes = manyFilesBytes(index);
    const hash = createHash('sha256').update(bytes).digest('hex') as BlockHash;
    await sender.add({ hash, bytes });
    requests[index] = { path: pathOf(index) as FilePath, size: bytes.length, mtime: 1_700_000_000_000 + index * 1000, blocks: [hash], deleted: false };
    totalBytes += bytes.length;
    if (index > 0 && index % 10_000 === 0) log(`uploaded ${index} blocks`);
  }
  await sender.finish();
  for (let start = 0; start < count; start += COMMIT_BATCH) {
    const result = await api.commitBatch(created.namespaceId, requests.slice(start, start + COMMIT_BATCH));
    if ('need' in result) throw new Error(`seeding: the server still needs ${result.need.length} block(s)`);
  }
  log(`seeded ${count} files in ${((performance.now() - began) / 1000).toFixed(1)} s`);
  return {
    namespaceId: created.namespaceId,
    shareLink: `${baseUrl}/w/${created.namespaceId}#invite=${invite}`,
    token: created.token,
    files: count,
    totalBytes,
  };
}

