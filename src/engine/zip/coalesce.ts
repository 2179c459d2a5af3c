/**
 * Gathers small chunks into pieces of at least `minBytes` (large chunks pass through as they
 * are, after what was gathered). A zip of many small files is a header, a few bytes and a
 * descriptor per file; writing each as its own chunk to a file stream costs a round trip to
 * the browser process every time (100,000 files would be 300,000 writes).
 */
export async function* coalesce(chunks: AsyncIterable<Uint8Array>, minBytes: number): AsyncGenerator<Uint8Array> {
  let pending = new Uint8Array(minBytes);
  let used = 0;
  for await (const chunk of chunks) {
    if (chunk.length >= minBytes) {
      if (used > 0) {
        yield pending.subarray(0, used);
        pending = new Uint8Array(minBytes);
        used = 0;
      }
      yield chunk;
      continue;
    }
    if (used + chunk.length > minBytes) {
      yield pending.subarray(0, used);
      pending = new Uint8Array(minBytes);
      used = 0;
    }
    pending.set(chunk, used);
    used += chunk.length;
  }
  if (used > 0) yield pending.subarray(0, used);
}
