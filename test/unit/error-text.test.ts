import { describe, expect, it } from 'vitest';
import { BlockStoreError } from '../../src/engine/block-store-error.ts';
import { describeError } from '../../src/protocol/index.ts';

describe('describeError', () => {
  it('turns a DOMException with an empty message into a sentence naming it', () => {
    // What Chromium rejects an IndexedDB put with once an off-the-record profile is full.
    const text = describeError(new DOMException('', 'QuotaExceededError'));
    expect(text).toBe("the browser refused to store more: this site's storage quota is used up or the disk is full (QuotaExceededError)");
  });

  it('keeps a DOMException message next to the sentence', () => {
    expect(describeError(new DOMException('Internal error committing transaction.', 'UnknownError'))).toBe(
      'the browser storage failed without saying why (often a full disk or a storage limit of the browser) (UnknownError: Internal error committing transaction.)',
    );
  });

  it('never returns an empty text', () => {
    for (const thrown of [new Error(''), new TypeError(''), '', '  ', undefined, null, {}, new (class Odd extends Error {})('')]) {
      expect(describeError(thrown).trim()).not.toBe('');
    }
    expect(describeError(new TypeError(''))).toBe('TypeError with no message');
    expect(describeError(undefined)).toBe('no reason was given (the failure carried no error value)');
  });

  it('reads the error of an event an IndexedDB request rejected with', () => {
    const event = { type: 'error', target: { error: new DOMException('', 'QuotaExceededError') } };
    expect(describeError(event)).toContain('QuotaExceededError');
    expect(describeError({ type: 'abort', target: {} })).toBe('a "abort" event with no error attached');
  });

  it('appends the cause', () => {
    const error = new Error('could not store block abc', { cause: new DOMException('', 'NotReadableError') });
    expect(describeError(error)).toBe(
      'could not store block abc, because the data could not be read (the file changed, moved, or is no longer accessible) (NotReadableError)',
    );
  });

  it('a BlockStoreError says what failed and why', () => {
    const error = new BlockStoreError('could not store block 0123456789ab…', { cause: new DOMException('', 'QuotaExceededError') });
    expect(error.message).toBe(
      "could not store block 0123456789ab…: the browser refused to store more: this site's storage quota is used up or the disk is full (QuotaExceededError)",
    );
    expect(describeError(error)).toBe(error.message);
  });
});
