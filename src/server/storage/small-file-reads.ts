import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/** One file's outcome: its bytes, `missing` (ENOENT), or `large` (maxBytes or more: read it another way). */
export type SmallFileRead = { bytes: Buffer } | 'missing' | 'large';

interface Job {
  paths: string[];
  reads: Array<{ resolve: (read: SmallFileRead) => void; reject: (error: Error) => void }>;
}

interface Reply {
  id: number;
  sizes: Int32Array;
  bytes: ArrayBuffer;
  errors: Array<{ index: number; code?: string; message: string }>;
}

interface Reader {
  worker: Worker;
  busy: Map<number, Job>;
}

/** Paths gathered in one turn of the event loop go to a thread together, at most this many a job. */
const MAX_JOB_FILES = 64;
const MISSING = -1;
const TOO_LARGE = -2;

/**
 * Reads whole small files on worker threads with synchronous calls, gathering the reads
 * asked for in one turn of the event loop into one message. A batch download of many small
 * blocks spent most of the server's CPU on the event loop's open, read and close callbacks
 * (about 35 µs of CPU per file on a warm cache, measured; 7 µs for the same three calls
 * made synchronously), so the calls move to threads where blocking costs nobody else.
 * Several threads keep several disk reads under way on a cold cache.
 */
export class SmallFileReadPool {
  private readonly readers: Reader[] = [];
  private pending: Job | null = null;
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly maxBytes: number,
    private readonly threads = 2,
  ) {}

  read(path: string): Promise<SmallFileRead> {
    if (this.closed) return Promise.reject(new Error('the block store is closed'));
    return new Promise((resolve, reject) => {
      let job = this.pending;
      if (!job) {
        job = { paths: [], reads: [] };
        this.pending = job;
        setImmediate(() => this.dispatch(job!));
      }
      job.paths.push(path);
      job.reads.push({ resolve, reject });
      if (job.paths.length >= MAX_JOB_FILES) this.dispatch(job);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const readers = this.readers.splice(0);
    await Promise.all(readers.map((reader) => reader.worker.terminate()));
  }

  private dispatch(job: Job): void {
    if (this.pending !== job) return;
    this.pending = null;
    if (this.closed) {
      for (const read of job.reads) read.reject(new Error('the block store is closed'));
      return;
    }
    const reader = this.leastBusy();
    const id = this.nextId++;
    reader.busy.set(id, job);
    reader.worker.postMessage({ id, paths: job.paths, maxBytes: this.maxBytes });
  }

  private leastBusy(): Reader {
    const idle = this.readers.find((reader) => reader.busy.size === 0);
    if (idle) return idle;
    if (this.readers.length < this.threads) return this.spawn();
    return this.readers.reduce((best, reader) => (reader.busy.size < best.busy.size ? reader : best));
  }

  private spawn(): Reader {
    // Plain CommonJS: it needs none of the loaders or probes the server process was started with.
    const worker = new Worker(fileURLToPath(new URL('./small-file-reader.cjs', import.meta.url)), { execArgv: [] });
    // Idle readers must not keep a server that is shutting down alive.
    worker.unref();
    const reader: Reader = { worker, busy: new Map() };
    worker.on('message', (reply: Reply) => this.answer(reader, reply));
    worker.on('error', (error) => this.fail(reader, error));
    worker.on('exit', (code) => this.fail(reader, new Error(`a block reader thread stopped (exit code ${code})`)));
    this.readers.push(reader);
    return reader;
  }

  private answer(reader: Reader, reply: Reply): void {
    const job = reader.busy.get(reply.id);
    if (!job) return;
    reader.busy.delete(reply.id);
    const errors = new Map(reply.errors.map((error) => [error.index, error]));
    let offset = 0;
    for (const [index, read] of job.reads.entries()) {
      const size = reply.sizes[index];
      if (size >= 0) {
        read.resolve({ bytes: Buffer.from(reply.bytes, offset, size) });
        offset += size;
      } else if (size === MISSING) {
        read.resolve('missing');
      } else if (size === TOO_LARGE) {
        read.resolve('large');
      } else {
        const error = errors.get(index);
        read.reject(Object.assign(new Error(error?.message ?? 'block read failed'), { code: error?.code }));
      }
    }
  }

  /** A thread that died fails what it held; the next read starts a new one. */
  private fail(reader: Reader, error: Error): void {
    const at = this.readers.indexOf(reader);
    if (at < 0) return;
    this.readers.splice(at, 1);
    for (const job of reader.busy.values()) for (const read of job.reads) read.reject(error);
    reader.busy.clear();
  }
}
