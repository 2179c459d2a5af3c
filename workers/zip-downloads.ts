/// <reference lib="webworker" />
import { contentDisposition } from './content-disposition.ts';
import { describeError, isZipJobId, parseNamespaceId, parseZipDownloadPath, type NamespaceId } from '../src/protocol/index.ts';

/**
 * The service worker's side of "Download as .zip" where the browser has no save dialog: a
 * page announces a job (`nearsync:zip-download`, with a port to its sync worker and a port
 * for the answer), waits for `nearsync:zip-announced`, then starts a download of
 * `/w/<ns>/zip/<jobId>/<name>`; the sync worker posts the archive as a byte stream on the
 * port, and this worker answers the download with it. Each job answers one request, within a
 * minute of being announced: a link to it from anywhere else finds nothing.
 *
 * The page waits for the answer because a message to this worker and a navigation's fetch
 * event are not ordered: under load the download's request could arrive first and find no job.
 */

/** How long an announced job waits for its download request. */
const CLAIM_WITHIN_MS = 60_000;
/** How long the sync worker may take to post the stream once the download asked. */
const STREAM_WITHIN_MS = 30_000;

interface PendingZip {
  ns: NamespaceId;
  stream: Promise<ReadableStream<Uint8Array>>;
  port: MessagePort;
  expired: () => void;
}

export interface ZipDownloadAnnouncement {
  type: 'nearsync:zip-download';
  ns: string;
  jobId: string;
}

/** This worker's answer to an announcement, on its second port. */
export type ZipAnnouncementAnswer = { type: 'nearsync:zip-announced'; jobId: string } | { type: 'nearsync:zip-refused'; jobId: string; message: string };

export function isZipDownloadAnnouncement(data: unknown): data is ZipDownloadAnnouncement {
  return typeof data === 'object' && data !== null && (data as { type?: unknown }).type === 'nearsync:zip-download';
}

export class ZipDownloads {
  private readonly pending = new Map<string, PendingZip>();

  /**
   * Keeps an announced job until its download arrives, and says so on `answer` (or why not).
   * The promise settles when the job is claimed or expires: the message event waits on it, so
   * the worker is not stopped meanwhile.
   */
  announce(data: ZipDownloadAnnouncement, port: MessagePort | undefined, answer?: MessagePort): Promise<void> {
    const reply = (message: ZipAnnouncementAnswer) => {
      answer?.postMessage(message);
      answer?.close();
    };
    const jobId = typeof data.jobId === 'string' ? data.jobId.slice(0, 100) : '';
    let ns: NamespaceId;
    try {
      if (!port) throw new Error('the announcement came without a port for the stream');
      ns = parseNamespaceId(data.ns, 'workspace');
      if (!isZipJobId(data.jobId)) throw new Error('the job id is not a UUID');
      if (this.pending.has(data.jobId)) throw new Error('the job was announced already');
    } catch (error) {
      port?.close();
      console.warn(`nearsync: a zip download was refused: ${describeError(error)}`);
      reply({ type: 'nearsync:zip-refused', jobId, message: describeError(error) });
      return Promise.resolve();
    }
    const stream = new Promise<ReadableStream<Uint8Array>>((resolve, reject) => {
      port.onmessage = (event: MessageEvent) => {
        const message = event.data as { type?: unknown; stream?: unknown } | null;
        if (message?.type === 'nearsync:zip-stream' && message.stream instanceof ReadableStream) resolve(message.stream as ReadableStream<Uint8Array>);
        else reject(new Error('the page sent something that is not a zip stream'));
      };
    });
    stream.catch(() => {});
    return new Promise<void>((settled) => {
      const timer = setTimeout(() => {
        this.pending.delete(data.jobId);
        port.close();
        settled();
      }, CLAIM_WITHIN_MS);
      this.pending.set(data.jobId, {
        ns,
        stream,
        port,
        expired: () => {
          clearTimeout(timer);
          settled();
        },
      });
      reply({ type: 'nearsync:zip-announced', jobId: data.jobId });
    });
  }

  /** The answer to a zip download URL: the job's archive once, else a plain refusal. */
  async respond(pathname: string, headersForAll: Record<string, string>): Promise<Response> {
    const plain = (status: number, text: string) =>
      new Response(`${text}\n`, { status, headers: { ...headersForAll, 'Content-Type': 'text/plain;charset=utf-8' } });
    let target: { ns: NamespaceId; jobId: string; name: string };
    try {
      target = parseZipDownloadPath(pathname);
    } catch (error) {
      return plain(400, `This is not a valid download address: ${describeError(error)}`);
    }
    const job = this.pending.get(target.jobId);
    if (!job || job.ns !== target.ns) {
      return plain(404, 'This download has expired or was used already. Start it again with “Download as .zip” in the workspace.');
    }
    this.pending.delete(target.jobId);
    job.expired();
    let body: ReadableStream<Uint8Array>;
    try {
      body = await withTimeout(job.stream, STREAM_WITHIN_MS);
    } catch (error) {
      job.port.close();
      return plain(503, `The page did not start the archive: ${describeError(error)}`);
    }
    return new Response(body, {
      status: 200,
      headers: {
        ...headersForAll,
        'Content-Type': 'application/zip',
        'Content-Disposition': contentDisposition('attachment', target.name),
      },
    });
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no stream within ${ms / 1000} s`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
