import { expectedBlockSize } from '../src/engine/block-layout.ts';
import type { FileRecord } from '../src/engine/types.ts';
import { MAX_BLOCK_SIZE, ValidationError, describeError, parseByteRange, parseFilePath, parseNamespaceId, type BlockHash, type FilePath, type NamespaceId } from '../src/protocol/index.ts';
import { parseFileReadRequest, type FileReadReply } from './file-read-messages.ts';

export interface FileReadDeps {
  /** The live file, `'unknown-workspace'` when this browser has not joined `ns`, null when no such file. */
  lookup(ns: NamespaceId, path: FilePath): Promise<FileRecord | null | 'unknown-workspace'>;
  /** Makes blocks `indexes` of `file` present, fetching missing ones first (fetchBlocksNow). */
  fetchNow(ns: NamespaceId, file: FileRecord, indexes: number[], signal: AbortSignal): Promise<void>;
  /** A stored block as a (disk-backed) Blob. */
  blob(hash: BlockHash): Promise<Blob | undefined>;
  /** Whether every block of `file` is stored. */
  complete(file: FileRecord): Promise<boolean>;
}

/**
 * Answers one file read from the service worker on `port` (file-read-messages.ts): looks
 * the file up, maps the Range to blocks (every client cuts files into fixed 4 MiB blocks),
 * and hands over each piece as a slice of the stored block (a Blob: no copy here) once that
 * block is present. The block after the one being read is asked for ahead (read-ahead), so
 * a stream does not wait a whole block fetch between pieces.
 */
export function serveFileRead(port: MessagePort, deps: FileReadDeps): void {
  const abort = new AbortController();
  let read: { ns: NamespaceId; file: FileRecord; next: number; end: number } | null = null;
  let opened = false;
  let busy = false;
  const post = (reply: FileReadReply) => port.postMessage(reply);
  const finish = () => {
    abort.abort(new Error('the read ended'));
    port.onmessage = null;
    port.close();
  };

  async function open(nsText: string, pathText: string, range: string | null): Promise<void> {
    let ns: NamespaceId;
    let path: FilePath;
    try {
      ns = parseNamespaceId(nsText, 'workspace');
      path = parseFilePath(pathText, 'path');
    } catch (error) {
      post({ type: 'refused', status: 400, message: describeError(error) });
      return finish();
    }
    const file = await deps.lookup(ns, path);
    if (file === 'unknown-workspace') {
      post({ type: 'refused', status: 404, message: `workspace ${ns} is not joined in this browser` });
      return finish();
    }
    if (!file) {
      post({ type: 'refused', status: 404, message: `${path} is not in this workspace (deleted, renamed, or not synced into this browser's file list yet)` });
      return finish();
    }
    const wanted = parseByteRange(range, file.size);
    if (wanted === 'unsatisfiable') {
      post({ type: 'refused', status: 416, message: `the range ${range} is outside ${path} (${file.size} bytes)`, size: file.size });
      return finish();
    }
    const start = wanted?.start ?? 0;
    const end = wanted?.end ?? file.size - 1;
    read = { ns, file, next: start, end };
    // The first block is asked for before the first pull arrives.
    if (end >= start) void deps.fetchNow(ns, file, [blockIndexAt(start)], abort.signal).catch(() => {});
    post({ type: 'head', status: wanted ? 206 : 200, size: file.size, start, end, synced: await deps.complete(file) });
  }

  async function pull(): Promise<void> {
    if (!read) return;
    if (read.next > read.end) {
      post({ type: 'end' });
      return finish();
    }
    const { ns, file } = read;
    const index = blockIndexAt(read.next);
    const last = blockIndexAt(read.end);
    if (index + 1 <= last) void deps.fetchNow(ns, file, [index + 1], abort.signal).catch(() => {});
    await deps.fetchNow(ns, file, [index], abort.signal);
    const blob = await deps.blob(file.blocks[index]);
    if (!blob) throw new Error(`block ${index} of ${file.path} went missing from this device's storage`);
    const expected = expectedBlockSize(file.size, file.blocks.length, index);
    if (blob.size !== expected) {
      throw new ValidationError('block', `${index} of ${file.path} holds ${blob.size} bytes where a file of ${file.size} bytes cut into 4 MiB blocks has ${expected}`);
    }
    const blockStart = index * MAX_BLOCK_SIZE;
    const from = read.next - blockStart;
    const to = Math.min(read.end + 1 - blockStart, blob.size);
    read.next = blockStart + to;
    post({ type: 'piece', blob: blob.slice(from, to) });
  }

  port.onmessage = (event: MessageEvent) => {
    const request = parseFileReadRequest(event.data);
    if (!request) return;
    if (request.type === 'cancel') return finish();
    if (request.type === 'open') {
      if (opened) return;
      opened = true;
      void open(request.ns, request.path, request.range).catch((error: unknown) => {
        post({ type: 'refused', status: 503, message: describeError(error) });
        finish();
      });
      return;
    }
    if (busy || !read) return;
    busy = true;
    void pull()
      .catch((error: unknown) => {
        if (abort.signal.aborted) return;
        post({ type: 'failed', message: `could not read ${read?.file.path}: ${describeError(error)}` });
        finish();
      })
      .finally(() => (busy = false));
  };
}

function blockIndexAt(offset: number): number {
  return Math.floor(offset / MAX_BLOCK_SIZE);
}
