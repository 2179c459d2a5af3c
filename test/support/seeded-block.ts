/**
 * Bytes that look random but come from `seed` alone (a linear congruential generator): tests
 * make the same block twice, or different blocks from different seeds, without storing them.
 */
export function blockOf(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  let x = seed * 2654435761;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}
