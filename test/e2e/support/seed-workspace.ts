import { createHash } from 'node:crypto';
import { ServerApi } from '../../../src/engine/server-api.ts';
import { MAX_BLOCK_SIZE, inviteFromLink, type BlockHash, type FilePath, type NamespaceId } from '../../../src/protocol/index.ts';

/**
 * Creates a workspace and fills it over the HTTP API, without a browser: each file is cut
 * into 4 MiB blocks (as every nearsync client cuts), the blocks are uploaded, then the file
 * is committed. For tests whose subject is a joiner, not the uploader.
 */

export interface SeedFile {
  path: string;
  bytes: Uint8Array;
  /** Milliseconds since the epoch (default: now). */
  mtime?: number;
}

export interface SeededWorkspace {
  namespaceId: NamespaceId;
  /** The creator's member token. */
  token: string;
  /** The invite (the part after `#invite=`): join with it for more member tokens. */
  invite: string;
  /** Every distinct block hash of the workspace, with its length. */
  blocks: Map<BlockHash, number>;
  /** The share link on `origin` (what a page in the namespace opens). */
  shareLink(origin: string): string;
}

function blockHash(bytes: Uint8Array): BlockHash {
  return createHash('sha256').update(bytes).digest('hex') as BlockHash;
}

/** Uploads `bytes` cut into blocks with a member's `api` and commits them as `path`; returns the block hashes in order. */
export async function commitBytes(api: ServerApi, ns: NamespaceId, path: string, bytes: Uint8Array, mtime = Date.now()): Promise<BlockHash[]> {
  const hashes: BlockHash[] = [];
  for (let offset = 0; offset < bytes.length; offset += MAX_BLOCK_SIZE) {
    const block = bytes.subarray(offset, Math.min(bytes.length, offset + MAX_BLOCK_SIZE));
    const hash = blockHash(block);
    await api.putBlock(hash, block);
    hashes.push(hash);
  }
  const result = await api.commit(ns, { path: path as FilePath, size: bytes.length, mtime, blocks: hashes, deleted: false });
  if ('need' in result) throw new Error(`commit of ${path} still needs ${result.need.length} block(s)`);
  return hashes;
}

/** `baseUrl` is how the test process reaches the server (the harness's `hostUrl`). */
export async function seedWorkspace(baseUrl: string, name: string, files: readonly SeedFile[]): Promise<SeededWorkspace> {
  const created = await new ServerApi(baseUrl).createWorkspace(name);
  const invite = inviteFromLink(created.inviteUrl);
  if (!invite) throw new Error(`no invite in ${created.inviteUrl}`);
  const api = new ServerApi(baseUrl, created.token);
  const blocks = new Map<BlockHash, number>();
  for (const file of files) {
    const hashes = await commitBytes(api, created.namespaceId, file.path, file.bytes, file.mtime);
    hashes.forEach((hash, index) => blocks.set(hash, Math.min(MAX_BLOCK_SIZE, file.bytes.length - index * MAX_BLOCK_SIZE)));
  }
  const namespaceId = created.namespaceId;
  return {
    namespaceId,
    token: created.token,
    invite,
    blocks,
    shareLink: (origin) => `${origin}/w/${namespaceId}#invite=${invite}`,
  };
}
