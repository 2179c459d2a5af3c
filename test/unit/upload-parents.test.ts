import { describe, expect, it } from 'vitest';
import { parseFilePath } from '../../src/protocol/index.ts';
import { UploadParents } from '../../workers/upload-parents.ts';

describe('UploadParents', () => {
  const a = parseFilePath('a.txt');
  const b = parseFilePath('b.txt');

  it('bases a later upload of a path on this queue\'s earlier one, not on the version that one replaced', () => {
    const parents = new UploadParents();
    expect(parents.resolve(a, 4)).toBe(4);
    parents.committed(a, 4, 9);
    expect(parents.resolve(a, 4)).toBe(9);
    parents.committed(a, 9, 12);
    expect(parents.resolve(a, 4)).toBe(12);
    // New paths (parent 0) chain the same way; other paths and other bases are untouched.
    parents.committed(b, 0, 13);
    expect(parents.resolve(b, 0)).toBe(13);
    expect(parents.resolve(a, 7)).toBe(7);
    parents.clear();
    expect(parents.resolve(a, 4)).toBe(4);
  });
});
