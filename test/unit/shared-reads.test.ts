import { describe, expect, it } from 'vitest';
import { SharedReads } from '../../src/server/shared-reads.ts';

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('SharedReads', () => {
  it('runs one load for callers that ask for the same key while it is in flight, and none of them earlier', async () => {
    const reads = new SharedReads<string>();
    const gate = deferred<string>();
    let loads = 0;
    const load = () => {
      loads++;
      return gate.promise;
    };
    const before = performance.now();
    const first = reads.read('ns:0', before, load);
    const second = reads.read('ns:0', before, load);
    const other = reads.read('ns:5', before, () => Promise.resolve('other'));
    gate.resolve('page');
    expect(await Promise.all([first, second, other])).toEqual(['page', 'page', 'other']);
    expect(loads).toBe(1);
    expect(reads.size).toBe(0);
  });

  it('never hands a caller a read that started before the moment it names', async () => {
    const reads = new SharedReads<string>();
    const stale = deferred<string>();
    const old = reads.read('ns:0', 0, () => stale.promise);
    await new Promise((resolve) => setTimeout(resolve, 2));
    const wokeAt = performance.now();
    const fresh = reads.read('ns:0', wokeAt, () => Promise.resolve('after the commit'));
    stale.resolve('before the commit');
    expect(await fresh).toBe('after the commit');
    expect(await old).toBe('before the commit');
    expect(reads.size).toBe(0);
  });

  it('passes a failure to every caller of that read, and the next read loads again', async () => {
    const reads = new SharedReads<string>();
    const gate = deferred<string>();
    const a = reads.read('k', 0, () => gate.promise);
    const b = reads.read('k', 0, () => Promise.resolve('unused'));
    gate.reject(new Error('database away'));
    await expect(a).rejects.toThrow('database away');
    await expect(b).rejects.toThrow('database away');
    expect(await reads.read('k', 0, () => Promise.resolve('again'))).toBe('again');
  });
});
