/**
 * CRC-32 of a concatenation from the CRCs of its parts: `crc32Combine(crc32(a), crc32(b),
 * b.length) === crc32(a ++ b)`, without the bytes. A zip entry's CRC is then the blocks' stored
 * CRCs combined, and the archive is written without reading a byte of content.
 *
 * Why it works: the CRC register is linear over GF(2). Appending n zero bytes to `a` moves its
 * register through a fixed linear map Z^n (the pre- and post-inversion cancel between the
 * two parts), and the register of `a ++ b` is Z^n(crc(a)) XOR crc(b). Z^n is a 32 × 32 bit
 * matrix; the matrices for 2^k zero bytes are made once by squaring, and Z^n applied as the
 * product of those for the bits set in n (at most 53 matrix-vector products).
 */

const POLYNOMIAL = 0xedb88320;

/** A 32 × 32 matrix over GF(2), column j (the image of bit j) as one 32-bit word. */
type Gf2Matrix = Uint32Array;

function times(matrix: Gf2Matrix, vector: number): number {
  let sum = 0;
  for (let bit = 0; vector !== 0; bit++, vector >>>= 1) if (vector & 1) sum ^= matrix[bit];
  return sum >>> 0;
}

/** `second ∘ first`: first applied, then second. */
function compose(second: Gf2Matrix, first: Gf2Matrix): Gf2Matrix {
  const out = new Uint32Array(32);
  for (let bit = 0; bit < 32; bit++) out[bit] = times(second, first[bit]);
  return out;
}

/** ZERO_BYTES[k]: the register's map for 2^k zero bytes appended; k up to 52 covers every safe integer length. */
const ZERO_BYTES: Gf2Matrix[] = (() => {
  // One zero bit through the reflected register: shift right, XOR the polynomial when bit 0 was set.
  let map: Gf2Matrix = new Uint32Array(32);
  map[0] = POLYNOMIAL;
  for (let bit = 1; bit < 32; bit++) map[bit] = (1 << (bit - 1)) >>> 0;
  for (let doubling = 0; doubling < 3; doubling++) map = compose(map, map);
  const powers = [map];
  for (let k = 1; k < 53; k++) powers.push(compose(powers[k - 1], powers[k - 1]));
  return powers;
})();

/** The CRC-32 of `a ++ b` from `crcA = crc32(a)`, `crcB = crc32(b)` and `lengthB = b.length`. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  if (!Number.isSafeInteger(lengthB) || lengthB < 0) throw new Error(`crc32Combine: ${lengthB} is not a byte count`);
  let register = crcA >>> 0;
  // Bits of the length from the lowest; division, not >>>, since lengths pass 2^32.
  for (let k = 0, rest = lengthB; rest > 0; k++, rest = Math.floor(rest / 2)) {
    if (rest % 2 === 1) register = times(ZERO_BYTES[k], register);
  }
  return (register ^ crcB) >>> 0;
}
