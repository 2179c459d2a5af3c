import type { WantedBlock } from './types.ts';

/**
 * Reorders wanted blocks so that devices syncing the same files at once ask the server for
 * different blocks first, then trade them: within each window of `window` blocks (in
 * journal order, so files still complete roughly one after another) blocks are sorted by a
 * per-device pseudo-random key of their hash. The key depends only on seed and hash, so the
 * order stays put when the list is planned again.
 */
export function spreadFetchOrder(wanted: readonly WantedBlock[], seed: number, window = 64): WantedBlock[] {
  if (seed === 0) return [...wanted];
  const ordered: WantedBlock[] = [];
  for (let start = 0; start < wanted.length; start += window) {
    const slice = wanted.slice(start, start + window);
    const keyed = slice.map((want) => ({ want, key: mix(seed ^ parseInt(want.hash.slice(0, 8), 16)) }));
    keyed.sort((a, b) => a.key - b.key);
    for (const { want } of keyed) ordered.push(want);
  }
  return ordered;
}

/** A 32-bit integer hash (xorshift-multiply), good enough to scatter orders. */
function mix(value: number): number {
  let x = value | 0;
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  return (x ^ (x >>> 16)) >>> 0;
}
