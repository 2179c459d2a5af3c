import { createHash } from 'node:crypto';
import {
  MAX_BRIDGE_READ_BYTES,
  ValidationError,
  parseBridgeReadReply,
  type BlockHash,
  type BridgeReadOut,
  type NamespaceId,
} from '../../protocol/index.ts';
import type { BridgeSocket } from '../relay/bridge-port.ts';

/** Why reading a block from one browser failed: its refusal code, or what went wrong with its answers. */
export class BrowserReadError extends Error {
  override readonly name = 'BrowserReadError';
  constructor(
    readonly reason: 'refused' | 'malformed' | 'timeout' | 'gone' | 'bad_block',
    message: string,
  ) {
    super(message);
  }
}

export interface BrowserReadOptions {
  /** How long one `bridge-read` may take to be answered. */
  timeoutMs: number;
  /** `bridge-read`s in flight at once for one block. */
  parallel: number;
}

/**
 * Pulls one block from one browser with `bridge-read` requests of at most 64 KiB: the first
 * piece tells the block's size, the rest go `parallel` at a time. Every answer is validated
 * (parseBridgeReadReply: exactly the bytes asked for, the same size throughout) and the
 * assembled block must hash to `hash`. Rejects with a BrowserReadError.
 */
export async function readBlockFromBrowser(
  browser: BridgeSocket,
  ns: NamespaceId,
  hash: BlockHash,
  options: BrowserReadOptions,
): Promise<Uint8Array> {
  const first = await readPiece(browser, { ns, hash, offset: 0, length: MAX_BRIDGE_READ_BYTES }, options.timeoutMs);
  const block = new Uint8Array(first.size);
  block.set(first.data, 0);
  const offsets: number[] = [];
  for (let offset = first.data.byteLength; offset < first.size; offset += MAX_BRIDGE_READ_BYTES) offsets.push(offset);
  const worker = async () => {
    for (let offset = offsets.shift(); offset !== undefined; offset = offsets.shift()) {
      const piece = await readPiece(browser, { ns, hash, offset, length: MAX_BRIDGE_READ_BYTES }, options.timeoutMs);
      if (piece.size !== first.size) throw new BrowserReadError('malformed', `the block's size changed from ${first.size} to ${piece.size}`);
      block.set(piece.data, offset);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, options.parallel) }, worker));
  } finally {
    // A failed piece stops the others from asking for more.
    offsets.length = 0;
  }
  if (createHash('sha256').update(block).digest('hex') !== hash) throw new BrowserReadError('bad_block', 'the bytes do not hash to the block asked for');
  return block;
}

async function readPiece(browser: BridgeSocket, request: BridgeReadOut, timeoutMs: number): Promise<{ data: Uint8Array; size: number }> {
  if (browser.gone.aborted) throw new BrowserReadError('gone', 'the browser disconnected');
  let answer: unknown;
  let onGone: (() => void) | null = null;
  try {
    answer = await Promise.race([
      browser.read(request, timeoutMs),
      new Promise<never>((_, reject) => {
        onGone = () => reject(new BrowserReadError('gone', 'the browser disconnected'));
        browser.gone.addEventListener('abort', onGone, { once: true });
      }),
    ]);
  } catch (error) {
    if (error instanceof BrowserReadError) throw error;
    throw new BrowserReadError('timeout', `no answer to bridge-read within ${timeoutMs} ms`);
  } finally {
    if (onGone) browser.gone.removeEventListener('abort', onGone);
  }
  let reply;
  try {
    reply = parseBridgeReadReply(answer, request);
  } catch (error) {
    if (error instanceof ValidationError) throw new BrowserReadError('malformed', error.message);
    throw error;
  }
  if (!reply.ok) throw new BrowserReadError('refused', `${reply.code}: ${reply.message}`);
  return reply;
}
