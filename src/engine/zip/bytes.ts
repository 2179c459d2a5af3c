/** Byte runs for the zip writer and its write gatherers. */

/** The parts one after another in one buffer (the part itself when there is only one). */
export function concatBytes(parts: readonly Uint8Array[], length = parts.reduce((sum, part) => sum + part.length, 0)): Uint8Array {
  if (parts.length === 1 && parts[0].length === length) return parts[0];
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Bytes appended in small pieces, kept in buffers of `chunkBytes` (a piece never split): many
 * small records held as a few large buffers, not as an object each.
 */
export class ByteChunks {
  private readonly full: Uint8Array[] = [];
  private current: Uint8Array;
  private used = 0;
  length = 0;

  constructor(private readonly chunkBytes: number) {
    this.current = new Uint8Array(chunkBytes);
  }

  append(piece: Uint8Array): void {
    if (this.used + piece.length > this.current.length) {
      if (this.used > 0) this.full.push(this.current.subarray(0, this.used));
      this.current = new Uint8Array(Math.max(this.chunkBytes, piece.length));
      this.used = 0;
    }
    this.current.set(piece, this.used);
    this.used += piece.length;
    this.length += piece.length;
  }

  /** Everything appended, in order, as chunks; leaves this empty. */
  take(): Uint8Array[] {
    const chunks = this.full.splice(0);
    if (this.used > 0) chunks.push(this.current.subarray(0, this.used));
    this.current = new Uint8Array(0);
    this.used = 0;
    this.length = 0;
    return chunks;
  }
}
