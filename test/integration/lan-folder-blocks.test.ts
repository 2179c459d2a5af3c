import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlockServer } from '../../src/engine/block-server.ts';
import { FileAssembly } from '../../src/lan/folder/file-assembly.ts';
import { cutFile } from '../../src/lan/folder/file-blocks.ts';
import { FolderBlockStore } from '../../src/lan/folder/folder-block-store.ts';
import { DiskBlockStore } from '../../src/lan/store/disk-block-store.ts';
import { sharedSha256Worker } from '../../src/lan/store/sha256-worker.ts';
import { SqliteStateStore } from '../../src/lan/store/sqlite-state-store.ts';
import { MAX_BLOCK_SIZE, type BlockHash, type FilePath, type NamespaceId } from '../../src/protocol/index.ts';
import { sha256 } from './helpers.ts';

/**
 * A folder-mode daemon's block store (FolderBlockStore) on a real folder, SQLite state and
 * block store: blocks of files in place are served from the files themselves, hash-checked;
 * a file changed under it is a miss, never a bad block; staged copies go once a file holds them.
 */

const NS = 'folderblocksfolderblocks' as NamespaceId;

let root: string;
let folder: string;
let state: SqliteStateStore;
let staging: DiskBlockStore;
let assembly: FileAssembly;
let changed: FilePath[];
let store: FolderBlockStore;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'nearsync-folder-blocks-'));
  folder = join(root, 'folder');
  await mkdir(folder);
  state = new SqliteStateStore(join(root, 'state.db'));
  staging = await DiskBlockStore.open(join(root, 'blocks'), { durable: false });
  assembly = new FileAssembly(folder, () => undefined);
  changed = [];
  store = new FolderBlockStore(staging, assembly, folder, state, (path) => changed.push(path));
});

afterEach(async () => {
  await assembly.close();
  state.close();
  await rm(root, { recursive: true, force: true });
});

/** Writes `bytes` as `path` in the folder and records it, as the materialiser does after its rename. */
async function placeFile(path: string, bytes: Buffer): Promise<BlockHash[]> {
  const blocks: BlockHash[] = [];
  for (let at = 0; at < bytes.length; at += MAX_BLOCK_SIZE) blocks.push(sha256(bytes.subarray(at, at + MAX_BLOCK_SIZE)) as BlockHash);
  await writeFile(join(folder, path), bytes);
  // A whole second, so a test can put the same mtime back exactly.
  const mtime = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
  await utimes(join(folder, path), mtime, mtime);
  const info = await stat(join(folder, path));
  state.putFolderRecord({ path: path as FilePath, size: info.size, mtimeMs: info.mtimeMs, blocks, sjid: 1, deleted: false });
  return blocks;
}

/**
 * Changes 4 bytes of `bytes` at `at` so that its CRC-32 is `target`'s again (same length): the
 * CRC is linear over GF(2), so the 32 bits are solved for by elimination.
 */
function keepCrc32(bytes: Buffer, target: Uint8Array, at: number): void {
  const zeros = crc32(Buffer.alloc(bytes.length));
  const effect = (bit: number) => {
    const unit = Buffer.alloc(bytes.length);
    unit[at + (bit >> 3)] = 1 << (bit & 7);
    return (crc32(unit) ^ zeros) >>> 0;
  };
  // A basis by highest set bit: each entry the effect of some set of the 32 bits (`bits`).
  const basis = new Map<number, { effect: number; bits: number }>();
  for (let bit = 0; bit < 32; bit++) {
    let row = { effect: effect(bit), bits: (1 << bit) >>> 0 };
    for (let high = 31; high >= 0 && row.effect !== 0; high--) {
      if (!((row.effect >>> high) & 1)) continue;
      const known = basis.get(high);
      if (!known) {
        basis.set(high, row);
        break;
      }
      row = { effect: (row.effect ^ known.effect) >>> 0, bits: (row.bits ^ known.bits) >>> 0 };
    }
  }
  let need = (crc32(bytes) ^ crc32(target)) >>> 0;
  let flip = 0;
  for (let high = 31; high >= 0; high--) {
    const known = basis.get(high);
    if (!((need >>> high) & 1) || !known) continue;
    need = (need ^ known.effect) >>> 0;
    flip = (flip ^ known.bits) >>> 0;
  }
  if (need !== 0) throw new Error('no 4-byte patch keeps this CRC-32');
  for (let bit = 0; bit < 32; bit++) if (flip & (1 << bit)) bytes[at + (bit >> 3)] ^= 1 << (bit & 7);
}

const blockServer = () => new BlockServer(store, async () => true);
const stagedCount = async () => (await staging.list()).length;

describe('blocks served from the folder\'s files', () => {
  it('serves blocks read into reused buffers: a buffer handed back is read into again, one still in use never is', async () => {
    const bytes = randomBytes(3 * MAX_BLOCK_SIZE);
    const blocks = await placeFile('served.bin', bytes);
    const expected = (i: number) => bytes.subarray(i * MAX_BLOCK_SIZE, (i + 1) * MAX_BLOCK_SIZE);
    const server = blockServer();
    const serve = async (hash: BlockHash) => {
      const lookup = await server.lookup(NS, hash, new Set([NS]));
      if (!lookup.ok) throw new Error(`not served: ${lookup.reason}`);
      return lookup.bytes;
    };
    const first = await serve(blocks[0]);
    const second = await serve(blocks[1]);
    // Both in use (queued on a link): two buffers, each with its own bytes.
    expect(first.buffer).not.toBe(second.buffer);
    expect(Buffer.from(first).equals(expected(0))).toBe(true);
    expect(Buffer.from(second).equals(expected(1))).toBe(true);
    // Every byte of the first was sent: its buffer holds the next block served.
    server.release(first);
    const third = await serve(blocks[2]);
    expect(third.buffer).toBe(first.buffer);
    expect(Buffer.from(third).equals(expected(2))).toBe(true);
    expect(Buffer.from(second).equals(expected(1))).toBe(true);
    // getBlock (the materialiser, uploads) never hands out a reused buffer.
    const got = await store.getBlock(blocks[0]);
    expect(got!.buffer).not.toBe(second.buffer);
    expect(got!.buffer).not.toBe(third.buffer);
  });

  it('serves blocks of a file not in the page cache past it (the last one read padded), bytes exact, leaving the file uncached', async () => {
    // The last block is pooled too (pooled from 1 MiB up; smaller ones go through the page cache).
    const bytes = randomBytes(2 * MAX_BLOCK_SIZE + 1536 * 1024 + 5);
    const blocks = await placeFile('cold.bin', bytes);
    const path = join(folder, 'cold.bin');
    // Out of the page cache, as a file the daemon wrote past it is.
    execFileSync('dd', [`of=${path}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none']);
    const cached = () => Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' }).trim());
    expect(cached()).toBe(0);
    const server = blockServer();
    for (const [i, hash] of blocks.entries()) {
      const lookup = await server.lookup(NS, hash, new Set([NS]));
      expect(lookup.ok && Buffer.from(lookup.bytes).equals(bytes.subarray(i * MAX_BLOCK_SIZE, (i + 1) * MAX_BLOCK_SIZE))).toBe(true);
      if (lookup.ok) server.release(lookup.bytes);
    }
    expect(cached()).toBe(0);
  });

  it('serves blocks of a file just cut in a scan through the page cache (its pages are there), bytes exact', async () => {
    const bytes = randomBytes(2 * MAX_BLOCK_SIZE + 1536 * 1024 + 5);
    const path = join(folder, 'scanned.bin');
    await writeFile(path, bytes);
    const cut = await cutFile(path);
    const info = await stat(path);
    state.putFolderRecord({ path: 'scanned.bin' as FilePath, size: info.size, mtimeMs: info.mtimeMs, blocks: cut.blocks, crcs: cut.crcs, inPageCache: true, sjid: 1, deleted: false });
    // Dropped from the cache here only to see the reads go through it (they fill it again).
    execFileSync('dd', [`of=${path}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none']);
    const cached = () => Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' }).trim());
    expect(cached()).toBe(0);
    const server = blockServer();
    for (const [i, hash] of cut.blocks.entries()) {
      const lookup = await server.lookup(NS, hash, new Set([NS]));
      expect(lookup.ok && Buffer.from(lookup.bytes).equals(bytes.subarray(i * MAX_BLOCK_SIZE, (i + 1) * MAX_BLOCK_SIZE))).toBe(true);
      if (lookup.ok) server.release(lookup.bytes);
    }
    expect(cached()).toBeGreaterThanOrEqual(bytes.length); // whole pages
  });

  it('reads every block of a file in place, bytes exact, and the staged copies go once the file holds them', async () => {
    const bytes = randomBytes(2 * MAX_BLOCK_SIZE + 4321);
    const blocks: BlockHash[] = [];
    for (let at = 0; at < bytes.length; at += MAX_BLOCK_SIZE) blocks.push(sha256(bytes.subarray(at, at + MAX_BLOCK_SIZE)) as BlockHash);
    // Received before any file was planned: staged.
    for (const [i, hash] of blocks.entries()) expect(await store.putVerified(hash, bytes.subarray(i * MAX_BLOCK_SIZE, (i + 1) * MAX_BLOCK_SIZE))).toBe(hash);
    expect(await stagedCount()).toBe(3);

    expect(await placeFile('data.bin', bytes)).toEqual(blocks);
    expect(await store.evictRecorded(() => false)).toBe(3);
    expect(await stagedCount()).toBe(0);

    expect(await store.hasBlocks(blocks)).toEqual(new Set(blocks));
    for (const [i, hash] of blocks.entries()) {
      const got = await store.getBlock(hash);
      expect(Buffer.from(got!).equals(bytes.subarray(i * MAX_BLOCK_SIZE, (i + 1) * MAX_BLOCK_SIZE))).toBe(true);
      const lookup = await blockServer().lookup(NS, hash, new Set([NS]));
      expect(lookup.ok && Buffer.from(lookup.bytes).equals(Buffer.from(got!))).toBe(true);
    }
    expect(changed).toEqual([]);
  });

  it('serves a block both staged and in a file in place from the file, and from the staged copy once the file changed', async () => {
    const bytes = randomBytes(MAX_BLOCK_SIZE + 2048);
    const first = bytes.subarray(0, MAX_BLOCK_SIZE);
    const hash = sha256(first) as BlockHash;
    // Received before its file was planned (staged), then the file went into place: both hold it until eviction.
    expect(await store.putVerified(hash, first)).toBe(hash);
    expect(await placeFile('both.bin', bytes)).toContain(hash);
    expect(await stagedCount()).toBe(1);
    const server = blockServer();
    const fromFile = await server.lookup(NS, hash, new Set([NS]));
    if (!fromFile.ok) throw new Error(`not served: ${fromFile.reason}`);
    expect(Buffer.from(fromFile.bytes).equals(first)).toBe(true);
    // Read from the file into the serving pool's shared buffers; the staging store reads into fresh ordinary ones.
    expect(fromFile.bytes.buffer).toBeInstanceOf(SharedArrayBuffer);
    server.release(fromFile.bytes);

    // The file edited under the daemon: a miss there, so the staged copy serves.
    const edited = Buffer.from(bytes);
    edited[7] ^= 0xff;
    await writeFile(join(folder, 'both.bin'), edited);
    await utimes(join(folder, 'both.bin'), new Date(), new Date(Date.now() + 5000));
    const fromStaging = await server.lookup(NS, hash, new Set([NS]));
    if (!fromStaging.ok) throw new Error(`not served: ${fromStaging.reason}`);
    expect(Buffer.from(fromStaging.bytes).equals(first)).toBe(true);
    expect(fromStaging.bytes.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect(changed).toEqual(['both.bin']);
  });

  it('keeps the staged copies of a file not cut at 4 MiB offsets (its blocks would be read from the wrong places)', async () => {
    const parts = [randomBytes(1000), randomBytes(1000)];
    const hashes = parts.map((part) => sha256(part) as BlockHash);
    for (const [i, part] of parts.entries()) await store.putBlock(hashes[i], part);
    const bytes = Buffer.concat(parts);
    await writeFile(join(folder, 'odd.bin'), bytes);
    const info = await stat(join(folder, 'odd.bin'));
    state.putFolderRecord({ path: 'odd.bin' as FilePath, size: info.size, mtimeMs: info.mtimeMs, blocks: hashes, sjid: 1, deleted: false });
    expect(await store.evictRecorded(() => false)).toBe(0);
    for (const [i, hash] of hashes.entries()) expect(Buffer.from((await store.getBlock(hash))!).equals(parts[i])).toBe(true);
  });

  it('keeps a staged copy that an upload still reads, and lets it go afterwards', async () => {
    const bytes = randomBytes(1000);
    const hash = sha256(bytes) as BlockHash;
    await store.putBlock(hash, bytes);
    await placeFile('small.txt', bytes);
    expect(await store.evictRecorded((h) => h === hash)).toBe(0);
    expect(await stagedCount()).toBe(1);
    expect(await store.evictRecorded(() => false)).toBe(1);
    expect(await stagedCount()).toBe(0);
  });

  it('a file edited under the daemon is a miss ("not_found"), not a bad block, and its blocks are no longer claimed', async () => {
    const bytes = randomBytes(MAX_BLOCK_SIZE + 10);
    const [first, second] = await placeFile('edited.bin', bytes);
    // Edited: other bytes, another mtime.
    const edited = Buffer.from(bytes);
    edited[5] ^= 0xff;
    await writeFile(join(folder, 'edited.bin'), edited);
    await utimes(join(folder, 'edited.bin'), new Date(), new Date(Date.now() + 5000));

    expect(await store.getBlock(first)).toBeNull();
    expect(changed).toEqual(['edited.bin']);
    expect(await blockServer().lookup(NS, second, new Set([NS]))).toEqual({ ok: false, reason: 'not_found' });
    expect(await store.hasBlocks([first, second])).toEqual(new Set());

    // Recorded again (the scanner committed the edit): served again, the new bytes.
    const [newFirst] = await placeFile('edited.bin', edited);
    expect(Buffer.from((await store.getBlock(newFirst))!).equals(edited.subarray(0, MAX_BLOCK_SIZE))).toBe(true);
  });

  it('bytes changed with the size and mtime kept fail the hash check on read: a miss too', async () => {
    const bytes = randomBytes(3000);
    const [hash] = await placeFile('same-stat.txt', bytes);
    const before = await stat(join(folder, 'same-stat.txt'));
    const altered = Buffer.from(bytes);
    altered[2999] ^= 1;
    await writeFile(join(folder, 'same-stat.txt'), altered);
    await utimes(join(folder, 'same-stat.txt'), before.atime, before.mtime);
    expect((await stat(join(folder, 'same-stat.txt'))).mtimeMs).toBe(before.mtimeMs);

    expect(await store.getBlock(hash)).toBeNull();
    expect(changed).toEqual(['same-stat.txt']);
    expect(await blockServer().lookup(NS, hash, new Set([NS]))).toEqual({ ok: false, reason: 'not_found' });
  });

  it('for a peer, a block read once (SHA-256) is checked by its CRC-32 after: bytes changed under the same size and mtime are still a miss; reads for the daemon itself are always hashed', async () => {
    const bytes = randomBytes(2 * MAX_BLOCK_SIZE);
    const [first, second] = await placeFile('read-twice.bin', bytes);
    await writeFile(join(folder, 'copy.bin'), bytes.subarray(0, MAX_BLOCK_SIZE));
    const copyInfo = await stat(join(folder, 'copy.bin'));
    state.putFolderRecord({ path: 'copy.bin' as FilePath, size: copyInfo.size, mtimeMs: copyInfo.mtimeMs, blocks: [first], sjid: 2, deleted: false });
    /** A block as served to a peer, copied out of the serving buffer, which goes back. */
    const served = async (hash: BlockHash) => {
      const read = await store.readBlock(hash);
      if (!read) return null;
      const copy = Buffer.from(read);
      store.releaseRead(read);
      return copy;
    };
    // Read once (hashed), twice (the CRC): the same bytes both times.
    for (let round = 0; round < 2; round++) {
      expect((await served(first))!.equals(bytes.subarray(0, MAX_BLOCK_SIZE))).toBe(true);
      expect((await served(second))!.equals(bytes.subarray(MAX_BLOCK_SIZE))).toBe(true);
    }
    // One byte of each block changed, size and mtime put back: the CRC no longer matches.
    const before = await stat(join(folder, 'read-twice.bin'));
    const handle = await open(join(folder, 'read-twice.bin'), 'r+');
    for (const at of [1234, MAX_BLOCK_SIZE + 99]) await handle.write(Buffer.from([bytes[at] ^ 0x20]), 0, 1, at);
    await handle.close();
    await utimes(join(folder, 'read-twice.bin'), before.atime, before.mtime);
    expect((await stat(join(folder, 'read-twice.bin'))).mtimeMs).toBe(before.mtimeMs);
    // The first block is still served, from the other file that holds it; the changed file is dropped.
    expect((await served(first))!.equals(bytes.subarray(0, MAX_BLOCK_SIZE))).toBe(true);
    expect(changed).toEqual(['read-twice.bin']);
    expect(await served(second)).toBeNull();

    // The trade-off, shown with bytes forged to keep the CRC-32 (four bytes solved for): a peer
    // is served them (it checks the SHA-256 and refuses them), the daemon's own read is a miss,
    // as its bytes would go into another file unchecked.
    const forged = Buffer.from(bytes.subarray(0, MAX_BLOCK_SIZE));
    forged[10] ^= 0x5a;
    keepCrc32(forged, bytes.subarray(0, MAX_BLOCK_SIZE), 100);
    expect(crc32(forged)).toBe(crc32(bytes.subarray(0, MAX_BLOCK_SIZE)));
    await rm(join(folder, 'copy.bin'));
    await writeFile(join(folder, 'forged.bin'), forged);
    const forgedInfo = await stat(join(folder, 'forged.bin'));
    state.putFolderRecord({ path: 'forged.bin' as FilePath, size: forgedInfo.size, mtimeMs: forgedInfo.mtimeMs, blocks: [first], sjid: 3, deleted: false });
    expect((await served(first))!.equals(forged)).toBe(true);
    expect(await store.getBlock(first)).toBeNull();
    expect(changed).toEqual(['read-twice.bin', 'copy.bin', 'forged.bin']);
  });

  it('keeps CRC-32s across a restart: a block cut in a scan, or read once, is served unhashed after it; bytes changed under the same size and mtime are still a miss, and CRCs of blocks no file holds go', async () => {
    const bytes = randomBytes(2 * MAX_BLOCK_SIZE);
    const [first, second] = [0, 1].map((i) => bytes.subarray(i * MAX_BLOCK_SIZE, (i + 1) * MAX_BLOCK_SIZE));
    // Cut as a scan cuts it (SHA-256 and CRC-32 from the same bytes) and recorded with its CRCs, as local-changes does.
    await writeFile(join(folder, 'scanned.bin'), bytes);
    const cut = await cutFile(join(folder, 'scanned.bin'));
    expect(cut.crcs).toEqual([crc32(first), crc32(second)]);
    const info = await stat(join(folder, 'scanned.bin'));
    state.putFolderRecord({ path: 'scanned.bin' as FilePath, size: info.size, mtimeMs: info.mtimeMs, blocks: cut.blocks, crcs: cut.crcs, sjid: 1, deleted: false });
    // Another file recorded without CRCs (as one written from received blocks is).
    const other = randomBytes(MAX_BLOCK_SIZE);
    const [otherHash] = await placeFile('received.bin', other);

    /**
     * Serves `hash` to a peer: whether the bytes were `expected` (null: a miss), and how many
     * SHA-256s the hash worker did meanwhile (no deep equality of 4 MiB: its diff alone hangs).
     */
    const served = async (hash: BlockHash, expected: Uint8Array | null) => {
      const before = sharedSha256Worker.offloaded;
      const read = await store.readBlock(hash);
      const right = read === null ? expected === null : expected !== null && Buffer.from(read).equals(expected);
      if (read) store.releaseRead(read);
      return { right, hashed: sharedSha256Worker.offloaded - before };
    };
    expect(await served(cut.blocks[0], first)).toEqual({ right: true, hashed: 0 });
    expect(await served(otherHash, other)).toEqual({ right: true, hashed: 1 });
    expect(await served(otherHash, other)).toEqual({ right: true, hashed: 0 });

    // A restart: the CRCs written on close are read back; nothing is hashed on the first serve.
    const restart = async () => {
      store.flush();
      await assembly.close();
      state.close();
      state = new SqliteStateStore(join(root, 'state.db'));
      assembly = new FileAssembly(folder, () => undefined);
      store = new FolderBlockStore(staging, assembly, folder, state, (path) => changed.push(path));
    };
    await restart();
    expect([...state.blockCrcs().keys()].sort()).toEqual([...cut.blocks, otherHash].sort());
    expect(await served(cut.blocks[1], second)).toEqual({ right: true, hashed: 0 });
    expect(await served(otherHash, other)).toEqual({ right: true, hashed: 0 });

    // Bytes changed under the same size and mtime, while stopped: the kept CRC no longer matches, a miss.
    const handle = await open(join(folder, 'received.bin'), 'r+');
    await handle.write(Buffer.from([other[777] ^ 0x01]), 0, 1, 777);
    await handle.close();
    const otherInfo = await stat(join(folder, 'received.bin'));
    await utimes(join(folder, 'received.bin'), otherInfo.atime, new Date(Math.round(otherInfo.mtimeMs)));
    expect(await served(otherHash, null)).toEqual({ right: true, hashed: 0 });
    expect(changed).toEqual(['received.bin']);

    // No file holds that block now: its CRC goes (kept state too); the scanned file's stay.
    state.deleteFolderRecord('scanned.bin' as FilePath);
    store.flush();
    expect(state.blockCrcs().size).toBe(0);
  });

  it('a file that is gone, or a symlink in its place, is a miss', async () => {
    const [gone] = await placeFile('gone.txt', randomBytes(100));
    await rm(join(folder, 'gone.txt'));
    expect(await store.getBlock(gone)).toBeNull();

    const bytes = randomBytes(200);
    const [linked] = await placeFile('linked.txt', bytes);
    const info = await stat(join(folder, 'linked.txt'));
    await writeFile(join(root, 'outside.txt'), bytes);
    await utimes(join(root, 'outside.txt'), info.atime, info.mtime);
    await rm(join(folder, 'linked.txt'));
    await symlink(join(root, 'outside.txt'), join(folder, 'linked.txt'));
    expect(await store.getBlock(linked)).toBeNull();
    expect(changed).toEqual(['gone.txt', 'linked.txt']);
  });

  it('a received block of a file being assembled is written once, into its temp file, and served from there; a region changed under the daemon is a miss', async () => {
    const bytes = randomBytes(MAX_BLOCK_SIZE + 5000);
    const parts = [bytes.subarray(0, MAX_BLOCK_SIZE), bytes.subarray(MAX_BLOCK_SIZE)];
    const hashes = parts.map((part) => sha256(part) as BlockHash);
    assembly.plan([{ path: 'sub/arriving.bin' as FilePath, size: bytes.length, mtime: Date.now(), blocks: hashes, sjid: 7 }]);
    for (const [i, hash] of hashes.entries()) expect(await store.putVerified(hash, parts[i])).toBe(hash);

    // Nothing staged: the temp file named after the entry holds both blocks at their offsets.
    expect(await stagedCount()).toBe(0);
    const temp = join(folder, 'sub', '.nearsync-tmp-e7');
    // Its last block may be padded with zeros to 4 KiB (written past the page cache); the materialiser truncates.
    const held = await readFile(temp);
    expect(held.subarray(0, bytes.length).equals(bytes)).toBe(true);
    expect(held.length - bytes.length).toBeLessThan(4096);
    expect(held.subarray(bytes.length).every((byte) => byte === 0)).toBe(true);
    expect(await store.hasBlocks(hashes)).toEqual(new Set(hashes));
    for (const [i, hash] of hashes.entries()) {
      const lookup = await blockServer().lookup(NS, hash, new Set([NS]));
      expect(lookup.ok && Buffer.from(lookup.bytes).equals(parts[i])).toBe(true);
    }

    // Torn under the daemon: that block is not served (NACK not_found, nobody penalised) nor claimed; the other still is.
    const handle = await open(temp, 'r+');
    await handle.write(Buffer.alloc(100, 9), 0, 100, 1000);
    await handle.close();
    expect(await blockServer().lookup(NS, hashes[0], new Set([NS]))).toEqual({ ok: false, reason: 'not_found' });
    expect(await store.hasBlocks(hashes)).toEqual(new Set([hashes[1]]));
    const second = await blockServer().lookup(NS, hashes[1], new Set([NS]));
    expect(second.ok && Buffer.from(second.bytes).equals(parts[1])).toBe(true);
  });
});
