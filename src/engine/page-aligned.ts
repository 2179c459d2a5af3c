/**
 * Shared memory that starts on a page boundary, so a Node daemon can hand a block in it to a
 * write past the page cache (O_DIRECT asks for aligned memory, and a SharedArrayBuffer's address
 * cannot be chosen). A WebAssembly.Memory's data is mapped page-aligned by V8.
 */

const WASM_PAGE = 64 * 1024;
/** What O_DIRECT asks of memory, offsets and lengths: 4 KiB covers 512-byte and 4Kn disks alike. */
export const DIRECT_IO_ALIGN = 4096;

const pageAligned = new WeakSet<ArrayBufferLike>();

/** A page-aligned SharedArrayBuffer of `size` bytes, or null where one cannot be had (then use a plain one). */
export function pageAlignedSharedBuffer(size: number): SharedArrayBuffer | null {
  if (size <= 0 || size % WASM_PAGE !== 0 || typeof WebAssembly === 'undefined') return null;
  try {
    const pages = size / WASM_PAGE;
    const buffer = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer as unknown as SharedArrayBuffer;
    pageAligned.add(buffer);
    return buffer;
  } catch {
    return null; // no shared WebAssembly memory here
  }
}

/**
 * Whether `bytes`, padded to `padded` bytes, can be the memory of a direct read or write where
 * they are: they start page-aligned in memory made by `pageAlignedSharedBuffer`, with room for
 * the padding.
 */
export function alignedForDirectIo(bytes: Uint8Array, padded: number): boolean {
  return pageAligned.has(bytes.buffer) && bytes.byteOffset % DIRECT_IO_ALIGN === 0 && bytes.byteOffset + padded <= bytes.buffer.byteLength;
}
