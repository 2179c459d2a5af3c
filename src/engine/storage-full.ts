/**
 * The device's block store refused a write for lack of space (a browser's quota, a full disk).
 * Not the source's fault: the engine pauses fetching, keeps every block already stored, and
 * resumes once space is free again.
 */
export class StorageFullError extends Error {
  override readonly name = 'StorageFullError';
}

export function isStorageFull(error: unknown): boolean {
  return error instanceof StorageFullError;
}

/** What the engine tells a view while it waits for space. */
export interface StorageFullState {
  /** Bytes of live files still to fetch. */
  remainingBytes: number;
  /** Space the platform says is free for this store, when it can tell. */
  freeBytes: number | null;
  /** remainingBytes - freeBytes (at least one block's worth when unknown). */
  neededBytes: number;
}
