import { describe, expect, it } from 'vitest';
import { folderPlatformOf, foldTwins, isFolderWorkName, unsafeNameReason, unsafePathReason } from '../../src/protocol/index.ts';

describe('names a folder can hold', () => {
  it('refuses names that mean a folder itself, separators and control characters everywhere', () => {
    for (const name of ['', '.', '..', 'a/b', 'a\\b', 'bell\u0007', 'del\u007f']) {
      expect(unsafeNameReason(name, 'other'), name).not.toBeNull();
      expect(unsafeNameReason(name, 'windows'), name).not.toBeNull();
    }
  });

  it('refuses its own work files: temp names and Chromium swap files', () => {
    expect(isFolderWorkName('.nearsync-tmp-1234')).toBe(true);
    expect(isFolderWorkName('report.pdf.crswap')).toBe(true);
    expect(unsafeNameReason('report.pdf.crswap', 'other')).toMatch(/reserved/);
    expect(isFolderWorkName('report.pdf')).toBe(false);
  });

  it('applies Windows rules only to a Windows folder', () => {
    const windowsOnly = ['a:b', 'what?', 'star*', 'q"uote', 'pipe|', '<tag>', 'trailing.', 'trailing ', 'CON', 'con.txt', 'Nul', 'COM1.log', 'lpt9', 'aux.tar.gz'];
    for (const name of windowsOnly) {
      expect(unsafeNameReason(name, 'windows'), name).not.toBeNull();
      expect(unsafeNameReason(name, 'other'), name).toBeNull();
    }
    for (const name of ['console.txt', 'com10', 'nul-device', 'a.b', '.hidden', 'plan (v2).txt', 'naïve.md']) {
      expect(unsafeNameReason(name, 'windows'), name).toBeNull();
    }
  });

  it('checks every segment of a path', () => {
    expect(unsafePathReason('docs/CON/x.txt', 'windows')).toMatch(/reserves/);
    expect(unsafePathReason('docs/../x.txt', 'other')).toMatch(/folder itself/);
    expect(unsafePathReason('docs/a/x.txt', 'windows')).toBeNull();
  });

  it('tells the platform from the user agent', () => {
    expect(folderPlatformOf('Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/156')).toBe('windows');
    expect(folderPlatformOf('Mozilla/5.0 (X11; Linux x86_64) Chrome/156')).toBe('other');
  });
});

describe('case and Unicode twins', () => {
  it('keeps the oldest entry of names that differ only by case, whatever the order', () => {
    const twins = foldTwins([
      { path: 'notes.txt', order: 9 },
      { path: 'Notes.txt', order: 3 },
      { path: 'NOTES.TXT', order: 12 },
      { path: 'other.txt', order: 1 },
    ]);
    expect(twins).toEqual(new Map([['notes.txt', 'Notes.txt'], ['NOTES.TXT', 'Notes.txt']]));
  });

  it('folds composed and decomposed forms together', () => {
    const composed = 'caf\u00e9.txt';
    const decomposed = 'cafe\u0301.txt';
    expect(foldTwins([{ path: decomposed, order: 2 }, { path: composed, order: 1 }])).toEqual(new Map([[decomposed, composed]]));
  });

  it('finds twins among folder names along the path', () => {
    const twins = foldTwins([
      { path: 'Docs/a.txt', order: 5 },
      { path: 'docs/b.txt', order: 2 },
      { path: 'docs/c.txt', order: 7 },
    ]);
    expect(twins).toEqual(new Map([['Docs/a.txt', 'docs/b.txt']]));
  });

  it('finds nothing when names differ', () => {
    expect(foldTwins([{ path: 'a/b', order: 1 }, { path: 'a/c', order: 2 }, { path: 'b', order: 3 }]).size).toBe(0);
  });
});
