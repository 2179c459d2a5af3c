import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BLOCK_SIZE } from '../../src/protocol/index.ts';
import { DaemonPool, type DaemonProcess } from '../support/lan-daemon.ts';
import { commitFile, createWorkspace, makeBlock, sha256, startHarness, until, type Harness, type TestBlock } from './helpers.ts';

/**
 * The native peer writes a file into a temp file beside its target as the file's blocks
 * arrive, renames it when complete, and says "in sync" only once every file is in place. The
 * server on loopback sends blocks at a capped rate, so a 24 MiB file takes seconds to arrive
 * and the folder can be watched meanwhile.
 */

const EGRESS_BYTES_PER_SECOND = 6_000_000;
const SYNC_MS = 60_000;
const TEMP_PREFIX = '.nearsync-tmp-';

let harness: Harness;
let scratch: string;
const daemons = new DaemonPool();

beforeAll(async () => {
  harness = await startHarness({ egressBytesPerSecond: EGRESS_BYTES_PER_SECOND });
  scratch = await mkdtemp(join(tmpdir(), 'nearsync-assembly-'));
});
afterEach(() => daemons.stopAll());
afterAll(async () => {
  await daemons.stopAll();
  await harness?.stop();
  await rm(scratch, { recursive: true, force: true });
});

const served = () => harness.server.metrics().blockBytesServed;

async function sizeOf(path: string): Promise<number | null> {
  return stat(path).then(
    (info) => info.size,
    () => null,
  );
}

/**
 * The temp files in `dir`, each with the bytes it holds on disk: blocks are written at their
 * offsets in any order, so the apparent size jumps to the end with the last block while the
 * allocated bytes count what was written so far.
 */
async function temps(dir: string): Promise<{ name: string; size: number }[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.startsWith(TEMP_PREFIX));
  const found = [];
  for (const name of names) {
    const info = await stat(join(dir, name)).catch(() => null);
    if (info) found.push({ name, size: info.blocks * 512 });
  }
  return found;
}

function blocksOf(count: number, lastSize: number): TestBlock[] {
  return Array.from({ length: count }, (_, i) => makeBlock(i === count - 1 ? lastSize : MAX_BLOCK_SIZE));
}

const bytesOf = (blocks: TestBlock[]) => Buffer.concat(blocks.map((block) => block.bytes));

describe('nearsync peer: files are written while their blocks arrive', () => {
  it('writes a file into a temp file as blocks arrive, never shows a partial file under its name, and says in sync only once every file is in place', async () => {
    const member = await createWorkspace(harness.url, 'assembly');
    const big = blocksOf(6, MAX_BLOCK_SIZE - 12_345);
    const small = blocksOf(1, 5_000);
    await commitFile(harness.url, member, 'media/big.bin', big);
    const lastEntry = await commitFile(harness.url, member, 'small.txt', small);
    const total = bytesOf(big).length + bytesOf(small).length;
    const dir = join(scratch, 'watched');
    await mkdir(dir);

    const servedBefore = served();
    const daemon = daemons.start({ server: harness.url, invite: member.inviteUrl, dir });
    const target = join(dir, 'media/big.bin');
    const expected = bytesOf(big);
    /** Bytes held by the temp file, seen while fewer than all block bytes had left the server. */
    const tempSizesMidway: number[] = [];
    const finalSizes = new Set<number>();
    let inSyncSeen: { big: string | null; small: string | null } | null = null;
    await until(
      async () => {
        // First the log line, then the folder: if the line came before the files, this sees it.
        const said = new RegExp(`in sync at journal entry ${lastEntry}\\b`).test(daemon.output);
        if (said && !inSyncSeen) {
          inSyncSeen = {
            big: await readFile(target).then(sha256, () => null),
            small: await readFile(join(dir, 'small.txt')).then(sha256, () => null),
          };
        }
        const midway = served() - servedBefore < total;
        for (const temp of await temps(join(dir, 'media'))) if (midway && temp.size > 0) tempSizesMidway.push(temp.size);
        const size = await sizeOf(target);
        if (size !== null) finalSizes.add(size);
        return inSyncSeen !== null;
      },
      SYNC_MS,
      'the daemon saying in sync',
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n--- daemon ---\n${daemon.output}`);
    });

    // The file grew in its temp file while later blocks were still leaving the server.
    expect(tempSizesMidway.length).toBeGreaterThan(0);
    expect(Math.min(...tempSizesMidway)).toBeLessThan(expected.length / 2);
    expect(Math.max(...tempSizesMidway)).toBeGreaterThan(expected.length / 2);
    // Under its own name the file only ever had its full size.
    expect([...finalSizes]).toEqual([expected.length]);
    // "in sync" came once both files were in place, byte for byte.
    expect(inSyncSeen).toEqual({ big: sha256(expected), small: sha256(bytesOf(small)) });
    expect(await temps(join(dir, 'media'))).toEqual([]);
  });

  it('a block torn in a folder file (size and mtime kept) is a miss: fetched again when another file needs it, not copied into it', async () => {
    const member = await createWorkspace(harness.url, 'assembly torn block');
    const block = makeBlock(300_000);
    await commitFile(harness.url, member, 'first.bin', [block]);
    const dir = join(scratch, 'torn');
    await mkdir(dir);
    const daemon = daemons.start({ server: harness.url, invite: member.inviteUrl, dir });
    await daemon.waitFor(/in sync at journal entry \d+/, SYNC_MS);
    // The folder-mode daemon keeps no second copy: first.bin is where the block is read from.
    await until(async () => (await readdir(join(`${dir}.nearsync`, 'blocks', block.hash.slice(0, 2))).catch(() => [])).length === 0, SYNC_MS, 'the staged copy gone');
    const firstPath = join(dir, 'first.bin');
    const before = await stat(firstPath);
    const torn = Buffer.from(await readFile(firstPath));
    torn.fill(0, 100_000);
    await writeFile(firstPath, torn);
    await utimes(firstPath, before.atime, before.mtime);
    const servedBefore = served();

    // Another path with the same block: the engine counts it as stored, the materialiser finds it torn.
    await commitFile(harness.url, member, 'second.bin', [block]);
    await until(async () => (await readFile(join(dir, 'second.bin')).then(sha256, () => null)) === block.hash, SYNC_MS, 'second.bin written').catch(
      (error: Error) => {
        throw new Error(`${error.message}\n--- daemon ---\n${daemon.output}`);
      },
    );
    expect(served() - servedBefore).toBe(block.bytes.length);
  });

  it('a daemon killed mid-file leaves no partial file under the name; the next run resumes from the temp file\'s verified blocks and removes a stale one', async () => {
    const member = await createWorkspace(harness.url, 'assembly crash');
    const big = blocksOf(6, 777_777);
    await commitFile(harness.url, member, 'big.bin', big);
    const expected = bytesOf(big);
    const dir = join(scratch, 'crash');
    await mkdir(dir);
    const target = join(dir, 'big.bin');

    const first = daemons.start({ server: harness.url, invite: member.inviteUrl, dir });
    let leftover: string | null = null;
    await until(
      async () => {
        const found = (await temps(dir)).find((temp) => temp.size >= 3 * MAX_BLOCK_SIZE);
        leftover = found?.name ?? null;
        return leftover !== null;
      },
      SYNC_MS,
      'a temp file with three blocks in it',
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n--- daemon ---\n${first.output}`);
    });
    first.kill('SIGKILL');
    await first.exited;
    expect(await sizeOf(target)).toBeNull();
    // Named after its journal entry, so the next run finds it.
    expect(leftover).toBe(`${TEMP_PREFIX}e1`);

    // The regions that hold their block; one of them is then torn (a power cut, say): it must be fetched again.
    const temp = Buffer.from(await readFile(join(dir, leftover!)));
    const held = big.filter((block, i) => sha256(temp.subarray(i * MAX_BLOCK_SIZE, i * MAX_BLOCK_SIZE + block.bytes.length)) === block.hash);
    expect(held.length).toBeGreaterThanOrEqual(2);
    const tornIndex = big.indexOf(held[0]);
    temp.fill(7, tornIndex * MAX_BLOCK_SIZE, tornIndex * MAX_BLOCK_SIZE + 1000);
    await writeFile(join(dir, leftover!), temp);
    // A temp file of an entry no longer live (an older run's): removed, never synced.
    const stale = `${TEMP_PREFIX}0123456789abcdef`;
    await writeFile(join(dir, stale), 'half a file');
    // Let the server finish counting what the kill cut short.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const servedBefore = served();

    const second: DaemonProcess = daemons.start({ server: harness.url, dir });
    await until(async () => (await readFile(target).then(sha256, () => null)) === sha256(expected), SYNC_MS, 'big.bin complete after the restart').catch(
      (error: Error) => {
        throw new Error(`${error.message}\n--- daemon ---\n${second.output}`);
      },
    );
    await until(async () => (await temps(dir)).length === 0, SYNC_MS, 'no temp file left').catch((error: Error) => {
      throw new Error(`${error.message}\n--- daemon ---\n${second.output}`);
    });
    expect(second.output).toContain(`resuming ${held.length - 1} blocks from temp files a previous run left`);
    expect(second.output).toContain(`removed ${stale}, left behind by a run that stopped mid-file`);
    // Only the blocks the temp file did not hold intact came from the server again.
    const refetched = big.filter((block) => !held.includes(block) || block === held[0]);
    expect(served() - servedBefore).toBe(refetched.reduce((sum, block) => sum + block.bytes.length, 0));
  });
});
