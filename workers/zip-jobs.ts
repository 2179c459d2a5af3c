import { zipStream, type ZipOutput, type ZipSource } from './zip-export.ts';
import type { ZipProgressView } from './sync-api.ts';

/**
 * The running zips of this worker, by the page's job id, so the page can cancel one; and the
 * two ways out: into a file handle, or as a stream handed to the service worker for a download.
 */
export class ZipJobs {
  private readonly running = new Map<string, AbortController>();

  /** Starts a zip stream; it leaves the registry when it ends, fails or is cancelled, then `onEnd` hears. */
  private start(
    jobId: string,
    source: ZipSource,
    onProgress: (progress: ZipProgressView) => void,
    output: ZipOutput,
    onEnd: (error?: unknown) => void = () => {},
  ): { stream: ReadableStream<Uint8Array | Blob>; signal: AbortSignal } {
    const id = parseJobId(jobId);
    if (this.running.has(id)) throw new Error(`a zip named ${id} is already running`);
    const abort = new AbortController();
    this.running.set(id, abort);
    const stream = zipStream(source, {
      signal: abort.signal,
      onProgress,
      output,
      onEnd: (error) => {
        if (this.running.get(id) === abort) this.running.delete(id);
        onEnd(error);
      },
    });
    return { stream, signal: abort.signal };
  }

  /**
   * Streams the zip into `target`. A FileSystemWritableFileStream writes to a side file that
   * replaces the target only on close, so a failed or cancelled zip leaves the target as it
   * was; an empty target (what the save picker made) is then removed.
   */
  async write(jobId: string, source: ZipSource, target: FileSystemFileHandle, onProgress: (progress: ZipProgressView) => void): Promise<ZipProgressView> {
    let last: ZipProgressView | null = null;
    // Blobs: the file stream copies block files inside the browser process.
    const { stream, signal } = this.start(jobId, source, (progress) => {
      last = progress;
      onProgress(progress);
    }, 'blobs');
    try {
      const writable = await target.createWritable();
      await stream.pipeTo(writable, { signal });
    } catch (error) {
      if (!signal.aborted) await stream.cancel(error).catch(() => undefined);
      await removeIfEmpty(target);
      throw error;
    }
    return last!;
  }

  /**
   * Posts the zip, as a byte stream, on `port` (to the service worker, which answers a download
   * with it: the way out where the browser has no save dialog), and resolves with the last
   * progress once the stream has been read to its end. Rejects with an AbortError when the
   * download or the job was cancelled, or with what failed. Nothing is read before the download
   * pulls.
   */
  toPort(jobId: string, source: ZipSource, port: MessagePort, onProgress: (progress: ZipProgressView) => void): Promise<ZipProgressView> {
    return new Promise<ZipProgressView>((resolve, reject) => {
      let last: ZipProgressView | null = null;
      const track = (progress: ZipProgressView) => {
        last = progress;
        onProgress(progress);
      };
      const { stream, signal } = this.start(jobId, source, track, 'bytes', (error) => {
        port.close();
        if (last?.done) resolve(last);
        else if (signal.aborted) reject(signal.reason);
        else reject(error ?? new DOMException('The download was cancelled', 'AbortError'));
      });
      port.postMessage({ type: 'nearsync:zip-stream', stream }, [stream as unknown as Transferable]);
    });
  }

  cancel(jobId: string): void {
    const abort = this.running.get(parseJobId(jobId));
    abort?.abort(new DOMException('The zip was cancelled', 'AbortError'));
  }
}

function parseJobId(jobId: string): string {
  if (typeof jobId !== 'string' || jobId.length === 0 || jobId.length > 100) throw new Error('a zip job needs an id of 1 to 100 characters');
  return jobId;
}

async function removeIfEmpty(target: FileSystemFileHandle): Promise<void> {
  try {
    const removable = target as FileSystemFileHandle & { remove?: () => Promise<void> };
    if ((await target.getFile()).size === 0) await removable.remove?.();
  } catch {
    // Best effort: the zip's own error is what the user needs to hear.
  }
}
