import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SmallFileReadPool } from '../../src/server/storage/small-file-reads.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nearsync-small-reads-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('SmallFileReadPool (real files, real worker threads)', () => {
  it('reads many files asked for in one turn, each whole and in its own place', async () => {
    const pool = new SmallFileReadPool(64 * 1024);
    try {
      const files = await Promise.all(
        Array.from({ length: 300 }, async (_, i) => {
          const bytes = randomBytes(1 + ((i * 7919) % 5000));
          const path = join(dir, `f${i}`);
          await writeFile(path, bytes);
          return { path, bytes };
        }),
      );
      const reads = await Promise.all(files.map((file) => pool.read(file.path)));
      for (const [i, read] of reads.entries()) {
        expect(read).not.toBe('missing');
        expect(Buffer.compare((read as { bytes: Buffer }).bytes, files[i].bytes)).toBe(0);
      }
    } finally {
      await pool.close();
    }
  });

  it('says missing for an absent file and large for one of maxBytes or more, beside good reads', async () => {
    const pool = new SmallFileReadPool(1024);
    try {
      await writeFile(join(dir, 'exact'), randomBytes(1024));
      await writeFile(join(dir, 'under'), Buffer.from('under'));
      const [absent, exact, under] = await Promise.all([pool.read(join(dir, 'absent')), pool.read(join(dir, 'exact')), pool.read(join(dir, 'under'))]);
      expect(absent).toBe('missing');
      expect(exact).toBe('large');
      expect((under as { bytes: Buffer }).bytes.toString()).toBe('under');
    } finally {
      await pool.close();
    }
  });

  it('fails only the read that failed, with the error code, and keeps serving', async () => {
    const pool = new SmallFileReadPool(1024);
    try {
      await mkdir(join(dir, 'a-directory'));
      await writeFile(join(dir, 'fine'), Buffer.from('fine'));
      const [broken, fine] = await Promise.allSettled([pool.read(join(dir, 'a-directory')), pool.read(join(dir, 'fine'))]);
      expect(broken.status).toBe('rejected');
      expect((broken as PromiseRejectedResult).reason).toMatchObject({ code: 'EISDIR' });
      expect(((fine as PromiseFulfilledResult<{ bytes: Buffer }>).value.bytes).toString()).toBe('fine');
      expect(((await pool.read(join(dir, 'fine'))) as { bytes: Buffer }).bytes.toString()).toBe('fine');
    } finally {
      await pool.close();
    }
  });

  it('refuses reads once closed', async () => {
    const pool = new SmallFileReadPool(1024);
    await pool.close();
    await expect(pool.read(join(dir, 'fine'))).rejects.toThrow(/closed/);
  });
});
