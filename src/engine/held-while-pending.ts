/**
 * Objects held from a module-level root while an operation on them is pending.
 *
 * *Why:* in Chromium 156 a pending read of a Blob's stream (`file.slice(…).stream()`) is not
 * itself a garbage-collection root. An async function awaiting it is reachable only through
 * the read's promise, the promise only through the stream, and the stream only through the
 * awaiting function: nothing outside the cycle. A collection while the read waits for the
 * browser process frees the whole cycle and the read never settles: the function never
 * resumes, with no error. Seen as uploads that stopped for good when four large files were
 * picked together (`test/e2e/uploads-at-once.test.ts`), always at a pending read of a slice's
 * stream, more often the more the worker allocated (keeping an upload's local copy from the
 * File re-reads it into 4 MiB buffers), and in the first run of each with the worker made to
 * collect garbage every 150 ms. The same is guarded for other platform objects whose pending
 * steps are awaited with nothing else holding them (a directory's entry iterator, a storage
 * bucket opening its directory).
 */
const held = new Set<object>();

/** Keeps `target` (and what it refers to) alive until the returned function is called. */
export function hold(target: object): () => void {
  const token = { target };
  held.add(token);
  return () => void held.delete(token);
}

/** `pending`, with `target` held until it settles. */
export function heldUntilSettled<T>(target: object, pending: Promise<T>): Promise<T> {
  return pending.finally(hold(target));
}
