import { expectedBlockSize } from '../src/engine/block-layout.ts';
import type { FileRecord } from '../src/engine/types.ts';
import { MAX_BLOCK_SIZE, ValidationError, describeError, parseByteRange, parseFilePath, parseNamespaceId, type BlockHash, type FilePath, type NamespaceId } from '../src/protocol/index.ts';
import { parseFileReadRequest, type FileReadReply } from './file-read-messages.ts';

export interface FileReadDeps {
  /** The live file, `'unknown-workspace'` when this browser has not joined `ns`, null when no such file. */
  lookup(ns: NamespaceId, path: FilePath): Promise<FileRecord | null | 'unknown-workspace'>;
  /**
   * Makes blocks `indexes` of `file` present, fetching missing ones first (fetchBlocksNow);
   * `from`: where the reader's bytes start in the first of them (peers send those first);
   * `ahead`: the reader will want them soon, not now (they yield to any block read now).
   */
  fetchNow(ns: NamespaceId, file: FileRecord, indexes: number[], signal: AbortSignal, from?: number, ahead?: boolean): Promise<void>;
  /** How many blocks a sequential read may ask for ahead at most (default 1: what the caller can hold). */
  readAhead?(ns: NamespaceId): number;
  /** A stored block as a (disk-backed) Blob. */
  blob(hash: BlockHash): Promise<Blob | undefined>;
  /** Whether every block of `file` is stored. */
  complete(file: FileRecord): Promise<boolean>;
  /**
   * Early, verified pieces of block `index` while a peer sends it (piece-taps.ts); null when
   * the block is stored already or this tab cannot watch peers (no engine). Optional.
   */
  pieces?(ns: NamespaceId, file: FileRecord, index: number): Promise<PieceLease | null>;
}

/** A reader's hold on a block's verified pieces, until `close`. */
export interface PieceLease {
  /** Verified bytes from `offset` in the block to the end of their piece, once checked. */
  read(offset: number, signal: AbortSignal): Promise<Uint8Array>;
  close(): void;
}

/**
 * Answers one file read from the service worker on `port` (file-read-messages.ts): looks
 * the file up, maps the Range to blocks (every client cuts files into fixed 4 MiB blocks),
 * and hands over each piece as a slice of the stored block (a Blob: no copy here) once that
 * block is present. Blocks after the one being read are asked for ahead (read-ahead), so a
 * stream does not wait a whole block fetch between pieces: one at first, twice as many each
 * time the reader moves on to the next block, up to `readAhead` (the engine bounds it by its
 * cache). They are asked as `ahead`: a block read now, by this read or a seek's, goes first,
 * and a read that ends (a seek cancels the old one) gives them up. While a block is still arriving
 * from a peer, a piece of it checked against the server's piece hash may be handed over
 * first (bytes), whichever is ready sooner: the block stored, or the piece verified.
 */
export function serveFileRead(port: MessagePort, deps: FileReadDeps): void {
  const abort = new AbortController();
  let read: { ns: NamespaceId; file: FileRecord; next: number; end: number } | null = null;
  /** Read-ahead: blocks asked for ahead so far (up to this index), the block last read, and how far ahead to ask now. */
  let askedUpTo = -1;
  let lastIndex = -1;
  let window = 1;
  let maxAhead = 1;
  let opened = false;
  let busy = false;
  /** Pieces of the block being read, while it arrives. */
  let lease: { index: number; held: Promise<PieceLease | null> } | null = null;
  const post = (reply: FileReadReply) => port.postMessage(reply);
  const leaseFor = (ns: NamespaceId, file: FileRecord, index: number): Promise<PieceLease | null> => {
    if (lease?.index === index) return lease.held;
    closeLease();
    const held = deps.pieces ? deps.pieces(ns, file, index).catch(() => null) : Promise.resolve(null);
    lease = { index, held };
    return held;
  };
  const closeLease = () => {
    void lease?.held.then((held) => held?.close());
    lease = null;
  };
  const finish = () => {
    closeLease();
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
    maxAhead = Math.max(1, deps.readAhead?.(ns) ?? 1);
    // The window grows only once the reader moves on from its first block (a player reading
    // a file's header and then seeking has asked for one block ahead, no more).
    lastIndex = blockIndexAt(start);
    // The first block is asked for before the first pull arrives (its pieces watched from the start).
    if (end >= start) {
      await leaseFor(ns, file, blockIndexAt(start));
      void deps.fetchNow(ns, file, [blockIndexAt(start)], abort.signal, start % MAX_BLOCK_SIZE).catch(() => {});
    }
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
    readAhead(ns, file, index, last);
    const blockStart = index * MAX_BLOCK_SIZE;
    const stored = deps.fetchNow(ns, file, [index], abort.signal, read.next - blockStart);
    const early = await earlyPiece(await leaseFor(ns, file, index), read.next - blockStart, stored);
    if (early) {
      const length = Math.min(early.length, read.end + 1 - read.next);
      read.next += length;
      post({ type: 'piece', bytes: early.slice(0, length) });
      return;
    }
    closeLease();
    const blob = await deps.blob(file.blocks[index]);
    if (!blob) throw new Error(`block ${index} of ${file.path} went missing from this device's storage`);
    const expected = expectedBlockSize(file.size, file.blocks.length, index);
    if (blob.size !== expected) {
      throw new ValidationError('block', `${index} of ${file.path} holds ${blob.size} bytes where a file of ${file.size} bytes cut into 4 MiB blocks has ${expected}`);
    }
    const from = read.next - blockStart;
    const to = Math.min(read.end + 1 - blockStart, blob.size);
    read.next = blockStart + to;
    post({ type: 'piece', blob: blob.slice(from, to) });
  }

  /** Asks for the blocks after `index` ahead, twice as many each time the read moves to the next block. */
  function readAhead(ns: NamespaceId, file: FileRecord, index: number, last: number): void {
    if (index !== lastIndex) {
      if (index === lastIndex + 1) window = Math.min(maxAhead, window * 2);
      lastIndex = index;
    }
    const upTo = Math.min(last, index + window);
    const fresh: number[] = [];
    for (let next = Math.max(index + 1, askedUpTo + 1); next <= upTo; next++) fresh.push(next);
    if (fresh.length === 0) return;
    askedUpTo = upTo;
    void deps.fetchNow(ns, file, fresh, abort.signal, undefined, true).catch(() => {});
  }

  /** A verified piece from `offset`, if one is checked before the block is stored; null once it is stored. */
  async function earlyPiece(held: PieceLease | null, offset: number, stored: Promise<void>): Promise<Uint8Array | null> {
    if (!held) {
      await stored;
      return null;
    }
    const giveUp = new AbortController();
    const onEnd = () => giveUp.abort(abort.signal.reason);
    abort.signal.addEventListener('abort', onEnd, { once: true });
    try {
      const piece = held.read(offset, giveUp.signal).catch(() => new Promise<never>(() => {}));
      return await Promise.race([stored.then(() => null), piece]);
    } finally {
      abort.signal.removeEventListener('abort', onEnd);
      giveUp.abort(new Error('no longer waiting for the piece'));
    }
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
