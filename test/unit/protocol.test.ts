import { describe, expect, it } from 'vitest';
import {
  ValidationError,
  parseBlockHash,
  parseCommitRequest,
  parseFilePath,
  parseJournalPage,
  normaliseUserPath,
  inviteFromLink,
  MAX_BLOCK_SIZE,
} from '../../src/protocol/index.ts';

const H = (c: string) => c.repeat(64);

describe('file paths', () => {
  it('accepts ordinary relative paths', () => {
    expect(parseFilePath('a.txt')).toBe('a.txt');
    expect(parseFilePath('docs/Q3 report (final).pdf')).toBe('docs/Q3 report (final).pdf');
    expect(parseFilePath('café/naïve.md')).toBe('café/naïve.md');
  });
  it.each([
    ['', 'empty'],
    ['../x', 'dot-dot'],
    ['a/../b', 'inner dot-dot'],
    ['./a', 'dot segment'],
    ['/etc/passwd', 'absolute'],
    ['a//b', 'empty segment'],
    ['a/', 'trailing slash'],
    ['a\u0000b', 'NUL'],
    ['a\nb', 'control'],
    ['a\\b', 'backslash'],
    ['C:evil', 'drive letter'],
    ['cafe\u0301', 'not NFC'],
    ['x'.repeat(4097), 'too long'],
    ['x'.repeat(256), 'segment too long'],
  ])('rejects %j (%s)', (path) => {
    expect(() => parseFilePath(path)).toThrow(ValidationError);
  });
  it('rejects non-strings', () => {
    expect(() => parseFilePath(42)).toThrow(ValidationError);
  });
  it('measures segments and paths in UTF-8 bytes, as TextEncoder counts them', () => {
    const utf8Bytes = (value: string) => new TextEncoder().encode(value).length;
    for (const unit of ['é', '€', '😀', '\ud800']) {
      const fits = unit.repeat(Math.floor(255 / utf8Bytes(unit)));
      expect(parseFilePath(fits)).toBe(fits);
      expect(() => parseFilePath(fits + unit)).toThrow(/segments must be at most 255 bytes/);
    }
    const segment = '😀'.repeat(63); // 252 bytes
    const path = Array.from({ length: 16 }, () => segment).join('/'); // 16 × 252 + 15 = 4047 bytes
    expect(parseFilePath(path)).toBe(path);
    expect(() => parseFilePath(`${path}/${'😀'.repeat(13)}`)).toThrow(/at most 4096 bytes/);
  });
  it('normalises what a user typed', () => {
    expect(normaliseUserPath('/a//b/./cafe\u0301')).toBe('a/b/café');
    expect(() => normaliseUserPath('a/../b')).toThrow(ValidationError);
  });
});

describe('block hashes', () => {
  it('accepts lower-case hex SHA-256 only', () => {
    expect(parseBlockHash(H('a'))).toBe(H('a'));
    expect(() => parseBlockHash(H('A'))).toThrow(ValidationError);
    expect(() => parseBlockHash('abc')).toThrow(ValidationError);
    expect(() => parseBlockHash(H('g'))).toThrow(ValidationError);
  });
});

describe('commit requests', () => {
  const good = { path: 'a.bin', size: MAX_BLOCK_SIZE + 1, mtime: 1_700_000_000_000, blocks: [H('a'), H('b')] };
  it('accepts a well-formed commit and defaults deleted to false', () => {
    expect(parseCommitRequest(good)).toEqual({ ...good, deleted: false });
  });
  it('accepts an empty file and a deletion', () => {
    expect(parseCommitRequest({ path: 'e', size: 0, mtime: 0, blocks: [] }).blocks).toEqual([]);
    expect(parseCommitRequest({ path: 'e', size: 0, mtime: 0, blocks: [], deleted: true }).deleted).toBe(true);
  });
  it.each([
    [{ ...good, size: -1 }],
    [{ ...good, size: 1.5 }],
    [{ ...good, size: 3 * MAX_BLOCK_SIZE }],
    [{ ...good, size: 1 }],
    [{ ...good, blocks: [H('a'), 'nope'] }],
    [{ ...good, blocks: 'x' }],
    [{ ...good, deleted: 'yes' }],
    [{ ...good, deleted: true }],
    [{ ...good, mtime: -5 }],
    [{ ...good, extra: 1 }],
    [{ ...good, path: '../up' }],
    [null],
    [[good]],
  ])('rejects %j', (body) => {
    expect(() => parseCommitRequest(body)).toThrow(ValidationError);
  });
});

describe('journal pages', () => {
  const entry = (sjid: number) => ({ sjid, path: `f${sjid}`, size: 0, mtime: 1, blocks: [], deleted: false });
  it('accepts a gapless page after the cursor', () => {
    const page = parseJournalPage({ entries: [entry(4), entry(5)], cursor: 5, more: false }, 3);
    expect(page.entries.map((e) => e.sjid)).toEqual([4, 5]);
  });
  it('accepts an empty page that keeps the cursor', () => {
    expect(parseJournalPage({ entries: [], cursor: 3, more: false }, 3).cursor).toBe(3);
  });
  it.each([
    [{ entries: [entry(5)], cursor: 5, more: false }, 'gap'],
    [{ entries: [entry(4), entry(4)], cursor: 4, more: false }, 'repeat'],
    [{ entries: [entry(3)], cursor: 3, more: false }, 'replay'],
    [{ entries: [entry(4)], cursor: 9, more: false }, 'cursor lies'],
    [{ entries: [], cursor: 2, more: false }, 'cursor goes back'],
    [{ entries: [entry(4)], cursor: 4 }, 'no more'],
    [{ entries: [{ ...entry(4), path: '/abs' }], cursor: 4, more: false }, 'bad path'],
  ] as Array<[unknown, string]>)('rejects %j (%s)', (page) => {
    expect(() => parseJournalPage(page, 3)).toThrow(ValidationError);
  });
});

describe('share links', () => {
  it('finds the invite in the fragment', () => {
    expect(inviteFromLink('http://h/w/ns#invite=AAAAAAAAAAAAAAAAAAAAAA')).toBe('AAAAAAAAAAAAAAAAAAAAAA');
    expect(inviteFromLink('http://h/w/ns')).toBeNull();
    expect(inviteFromLink('http://h/w/ns#invite=short')).toBeNull();
  });
});
