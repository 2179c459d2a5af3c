/** Objects (file handles, opened Files) between two nudges. */
const NUDGE_EVERY = 1_000;
/** Never touched, so never resident: only V8's count of external memory grows. */
const NUDGE_BYTES = 64 * 1024 * 1024;

/**
 * Prompts V8 to collect garbage while a worker churns through many small platform objects.
 *
 * A `FileSystemFileHandle` or an opened `File` is a small JS wrapper around state Chromium
 * keeps in the browser process and the renderer; the garbage collector does not see that
 * weight, so it rarely runs while a worker walks a big folder, and the dropped wrappers pile
 * up. Measured (Chromium 156, 100,000 files walked and opened in a worker, nothing kept):
 * Chromium's RSS peaked at +974 MiB; with a 64 MiB ArrayBuffer allocated and dropped every
 * 1,000 files it peaked at +119 MiB (a forced gc() every 1,000 files: +80 MiB). An ArrayBuffer
 * counts as external memory, and growth of external memory is what V8 does react to; the
 * buffer is never written, so the operating system never backs it with pages.
 */
export class GcNudge {
  private sinceLast = 0;
  /** Kept until the next nudge, so no compiler can prove the allocation unused and drop it. */
  private ballast: ArrayBuffer | null = null;

  counted(objects: number): void {
    this.sinceLast += objects;
    if (this.sinceLast < NUDGE_EVERY) return;
    this.sinceLast = 0;
    this.ballast = new ArrayBuffer(NUDGE_BYTES);
  }
}
