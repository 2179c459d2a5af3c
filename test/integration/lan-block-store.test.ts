import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskBlockStore } from '../../src/lan/store/disk-block-store.ts';
import type { BlockHash } from '../../src/protocol/index.ts';

/** The native peer's block store on a real directory: one hash per stored block, and what a folder-mode store checks on read. */

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'nearsync-block-store-'));
});
afterAll(() => rm(scratch, { recursive: true, force: true }));

const hashOf = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex') as BlockHash;
const exists = (path: string) => stat(path).then(
  () => true,
  () => false,
);

describe('DiskBlockStore', () => {
  it('putVerified stores matching bytes and answers the hash of bytes that do not match, storing nothing', async () => {
    const store = await DiskBlockStore.open(join(scratch, 'verified'));
    const bytes = new Uint8Array(randomBytes(100_000));
    const hash = hashOf(bytes);
    expect(await store.putVerified(hash, bytes)).toBe(hash);
    expect(Buffer.from((await store.getBlock(hash))!).equals(Buffer.from(bytes))).toBe(true);

    const other = new Uint8Array(randomBytes(100_000));
    const claimed = hashOf(new Uint8Array(randomBytes(10)));
    expect(await store.putVerified(claimed, other)).toBe(hashOf(other));
    expect(await exists(store.pathOf(claimed))).toBe(false);
    expect(await store.hasBlocks([claimed])).toEqual(new Set());
  });

  it('a folder-mode store (not durable) reports a block whose bytes no longer match as absent and removes it', async () => {
    const store = await DiskBlockStore.open(join(scratch, 'folder-mode'), { durable: false });
    const bytes = new Uint8Array(randomBytes(64 * 1024));
    const hash = hashOf(bytes);
    await store.putBlock(hash, bytes);
    expect(Buffer.from((await store.getBlock(hash))!).equals(Buffer.from(bytes))).toBe(true);

    // As a power cut may leave a block written without fsync: torn, here zero-filled at the end.
    const torn = Buffer.from(await readFile(store.pathOf(hash)));
    torn.fill(0, 32 * 1024);
    await writeFile(store.pathOf(hash), torn);
    expect(await store.getBlock(hash)).toBeNull();
    expect(await exists(store.pathOf(hash))).toBe(false);
    expect(await store.hasBlocks([hash])).toEqual(new Set());
  });
});
