import { describe, expect, it } from 'vitest';
import { MAX_PATH_BYTES, conflictedCopyName, conflictedCopyPath, parseFilePath, type FilePath } from '../../src/protocol/index.ts';

const bytes = (text: string) => new TextEncoder().encode(text).length;

describe('conflicted copy names', () => {
  const date = new Date(2024, 4, 1, 14, 22, 33);

  it('keeps the extension and finds a free name', () => {
    expect(conflictedCopyName('plan.txt', date, 'desk-1', () => false)).toBe('plan (conflicted copy 2024-05-01 142233 desk-1).txt');
    expect(conflictedCopyName('.bashrc', date, 'h', () => false)).toBe('.bashrc (conflicted copy 2024-05-01 142233 h)');
    expect(conflictedCopyName('Makefile', date, 'h', () => false)).toBe('Makefile (conflicted copy 2024-05-01 142233 h)');
    const taken = new Set(['a (conflicted copy 2024-05-01 142233 h).md', 'a (conflicted copy 2024-05-01 142233 h 2).md']);
    expect(conflictedCopyName('a.md', date, 'h', (name) => taken.has(name))).toBe('a (conflicted copy 2024-05-01 142233 h 3).md');
  });

  it('names the device by its label, without characters that would break a path or the tag', () => {
    expect(conflictedCopyName('a.txt', date, 'Chrome 1a2b', () => false)).toBe('a (conflicted copy 2024-05-01 142233 Chrome 1a2b).txt');
    expect(conflictedCopyName('a.txt', date, 'bad/host  name', () => false)).toBe('a (conflicted copy 2024-05-01 142233 badhost name).txt');
    expect(conflictedCopyName('a.txt', date, "Ann's (laptop)\\", () => false)).toBe('a (conflicted copy 2024-05-01 142233 Anns laptop).txt');
    expect(conflictedCopyName('a.txt', date, 'Zoë’s Mac', () => false)).toBe('a (conflicted copy 2024-05-01 142233 Zoës Mac).txt');
    expect(conflictedCopyName('a.txt', date, '///', () => false)).toBe('a (conflicted copy 2024-05-01 142233 device).txt');
    const long = conflictedCopyName('a.txt', date, 'é'.repeat(40), () => false);
    expect(long).toBe(`a (conflicted copy 2024-05-01 142233 ${'é'.repeat(16)}).txt`);
  });

  it('stays within a 255-byte segment, treating an overlong extension as part of the name', () => {
    const name = conflictedCopyName(`${'é'.repeat(200)}.bin`, date, 'host', () => false);
    expect(bytes(name)).toBeLessThanOrEqual(255);
    expect(name).toMatch(/^é+ \(conflicted copy 2024-05-01 142233 host\)\.bin$/);
    const longExt = conflictedCopyName(`a.${'x'.repeat(250)}`, date, 'host', () => false);
    expect(bytes(longExt)).toBeLessThanOrEqual(255);
    expect(longExt.endsWith(' (conflicted copy 2024-05-01 142233 host)')).toBe(true);
  });

  it('makes a whole path: same folder, valid under the protocol, within the path limit', () => {
    const path = parseFilePath('docs/Q3 report.pdf');
    expect(conflictedCopyPath(path, date, 'Ann', () => false)).toBe('docs/Q3 report (conflicted copy 2024-05-01 142233 Ann).pdf');
    const taken = new Set<FilePath>([parseFilePath('docs/Q3 report (conflicted copy 2024-05-01 142233 Ann).pdf')]);
    expect(conflictedCopyPath(path, date, 'Ann', (candidate) => taken.has(candidate))).toBe(
      'docs/Q3 report (conflicted copy 2024-05-01 142233 Ann 2).pdf',
    );
    // A folder path near the limit leaves less than a segment for the name.
    const folder = Array.from({ length: 20 }, () => 'd'.repeat(200)).join('/');
    const deep = parseFilePath(`${folder}/${'n'.repeat(4096 - folder.length - 1 - 4)}.txt`);
    expect(bytes(deep)).toBe(MAX_PATH_BYTES);
    const copy = conflictedCopyPath(deep, date, 'Ann', () => false);
    expect(bytes(copy)).toBeLessThanOrEqual(MAX_PATH_BYTES);
    expect(copy.startsWith(`${folder}/n`)).toBe(true);
    expect(copy.endsWith(' (conflicted copy 2024-05-01 142233 Ann).txt')).toBe(true);
  });
});
