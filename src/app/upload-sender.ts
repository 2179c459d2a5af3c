import type { UploadInput, UploadPart } from '../../workers/sync-api.ts';

/** Main-thread time one part may take to hand over (its Files' first structured clone). */
const PART_BUDGET_MS = 20;
const FIRST_PART = 16;
const MAX_PART = 500;

/**
 * Hands a drop to the sync worker in parts sized to stay within a frame's budget, yielding to
 * the page between them. Handing a picked File to a worker costs the main thread a
 * synchronous file-metadata round trip the first time (Chromium 156, measured: 4,000 Files
 * took 1.95 s in one message or in sixteen, 28 ms the second time; summing their sizes cost
 * the same), so 10,000 files in one call froze the page for ten seconds. Sizes are never read
 * here. The worker starts uploading with the first part, which announces the drop's count.
 */
export async function sendUploadsInParts(
  inputs: readonly UploadInput[],
  send: (part: UploadInput[], about: UploadPart) => Promise<void>,
): Promise<void> {
  const drop = { files: inputs.length };
  let size = FIRST_PART;
  for (let at = 0; at < inputs.length; ) {
    const part = inputs.slice(at, at + size);
    const began = performance.now();
    // The clone happens while the call posts its message, before the first await.
    const sent = send(part, { first: at === 0, drop });
    const handOverMs = performance.now() - began;
    await sent;
    at += part.length;
    // Toward the budget, at most doubling: the cost per file varies (some are sized already).
    const fits = Math.round((part.length * PART_BUDGET_MS) / Math.max(handOverMs, 0.5));
    size = Math.max(1, Math.min(MAX_PART, 2 * part.length, fits));
    if (at < inputs.length) await nextTask();
  }
}

function nextTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
