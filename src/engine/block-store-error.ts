import { describeError } from '../protocol/index.ts';

/**
 * A LocalBlockStore could not store or read a block (a full disk, a storage limit): the
 * device's fault, not the source's, so the banner must not blame the server or a peer.
 */
export class BlockStoreError extends Error {
  override readonly name = 'BlockStoreError';
  constructor(action: string, options: { cause: unknown }) {
    super(`${action}: ${describeError(options.cause)}`, options);
  }
}
