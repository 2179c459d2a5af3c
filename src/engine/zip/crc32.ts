/**
 * CRC-32 (ISO 3309, the zip checksum), computed slice-by-8: eight table lookups per eight
 * input bytes instead of one per byte. In V8 that is about five times the byte-at-a-time rate,
 * and the zip writer runs it over every byte it archives, so it sets the archive's speed; the
 * browser's block writer runs it over every block it stores, for zips (block-crcs.ts).
 *
 * The middle of the input is read as 32-bit words (an Int32Array over the same bytes) where the
 * platform is little-endian, which is every browser this runs in: two loads per eight bytes
 * instead of eight. The tables are Int32Arrays and no step ends in `>>> 0`, so no lookup makes
 * a heap number. Measured on 4 MiB in a dedicated worker of Chromium 156 (the same build of both
 * as the app bundles them): 3.3 ms against 9.3–11.9 ms for the byte-at-a-time slice-by-8 with
 * Uint32Array tables it replaces (Node 20: 4.0 against 5.0 ms). A slice-by-16 variant was no
 * faster in Chromium and slower in Node (8.3 ms), so it was not kept.
 */

const POLYNOMIAL = 0xedb88320;

/** TABLES[k][b]: the CRC of byte b followed by k zero bytes (as a signed 32-bit value). */
const TABLES: Int32Array[] = (() => {
  const tables = Array.from({ length: 8 }, () => new Int32Array(256));
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ POLYNOMIAL : crc >>> 1;
    tables[0][byte] = crc;
  }
  for (let byte = 0; byte < 256; byte++) {
    for (let k = 1; k < 8; k++) tables[k][byte] = (tables[k - 1][byte] >>> 8) ^ tables[0][tables[k - 1][byte] & 0xff];
  }
  return tables;
})();

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The running CRC of data fed in pieces: `crc32Update(crc32Update(0, a), b) === crc32(a ++ b)`. */
export function crc32Update(crc: number, bytes: Uint8Array): number {
  const t0 = TABLES[0];
  let c = ~crc;
  let i = 0;
  const length = bytes.length;
  if (LITTLE_ENDIAN && length >= 64) {
    // Bytes one at a time up to a 4-byte boundary, then words, then the rest one at a time.
    const head = (4 - (bytes.byteOffset % 4)) % 4;
    for (; i < head; i++) c = t0[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    const pairs = (length - head) >>> 3;
    c = crc32Words(c, new Int32Array(bytes.buffer, bytes.byteOffset + head, pairs * 2));
    i = head + pairs * 8;
  } else {
    c = crc32Bytes(c, bytes, length - (length % 8));
    i = length - (length % 8);
  }
  while (i < length) c = t0[(c ^ bytes[i++]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

export function crc32(bytes: Uint8Array): number {
  return crc32Update(0, bytes);
}

/** Slice-by-8 over `words` (an even count, little-endian), from the inverted running CRC `c`. */
function crc32Words(c: number, words: Int32Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  const n = words.length;
  for (let i = 0; i < n; i += 2) {
    const low = c ^ words[i];
    const high = words[i + 1];
    c =
      t7[low & 0xff] ^
      t6[(low >>> 8) & 0xff] ^
      t5[(low >>> 16) & 0xff] ^
      t4[low >>> 24] ^
      t3[high & 0xff] ^
      t2[(high >>> 8) & 0xff] ^
      t1[(high >>> 16) & 0xff] ^
      t0[high >>> 24];
  }
  return c;
}

/** Slice-by-8 over the first `end` bytes (a multiple of 8), from the inverted running CRC `c`. */
function crc32Bytes(c: number, bytes: Uint8Array, end: number): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  for (let i = 0; i < end; i += 8) {
    const low = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c =
      t7[low & 0xff] ^
      t6[(low >>> 8) & 0xff] ^
      t5[(low >>> 16) & 0xff] ^
      t4[low >>> 24] ^
      t3[bytes[i + 4]] ^
      t2[bytes[i + 5]] ^
      t1[bytes[i + 6]] ^
      t0[bytes[i + 7]];
  }
  return c;
}
