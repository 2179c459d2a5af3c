import { describe, expect, it } from 'vitest';
import { SNAPSHOT_PART_FILES, foldFilePages, snapshotPages, worthCompacting, type FilePage } from '../../src/engine/file-page-log.ts';
import type { FileRecord } from '../../src/engine/types.ts';
import type { Cursor, FilePath } from '../../src/protocol/index.ts';

const file = (path: string, sjid: number): FileRecord => ({ path: path as FilePath, size: sjid, mtime: 0, blocks: [], sjid });
const page = (cursor: number, files: FileRecord[], removed: string[] = []): FilePage => ({ kind: 'page', cursor: cursor as Cursor, files, removed: removed as FilePath[] });
const live = (pages: FilePage[]) => Object.fromEntries([...foldFilePages(pages).files].map(([path, record]) => [path, record.sjid]));

describe('foldFilePages', () => {
  it('keeps, per path, the event with the highest sjid, whatever order the pages come in', () => {
    const pages = [page(3, [file('a', 1), file('b', 3)]), page(5, [file('a', 5)], ['b']), page(7, [file('b', 6)], ['a'])];
    const expected = { b: 6 };
    expect(live(pages)).toEqual(expected);
    expect(live([...pages].reverse())).toEqual(expected);
    expect(live([pages[1], pages[2], pages[0]])).toEqual(expected);
  });

  it('folds pages of two tabs with different boundaries over the same entries alike', () => {
    // Entries: 1 add a, 2 add b, 3 delete a, 4 add a, 5 delete b.
    const tabA = [page(2, [file('a', 1), file('b', 2)]), page(5, [file('a', 4)], ['b'])];
    const tabB = [page(3, [file('b', 2)], ['a']), page(5, [file('a', 4)], ['b'])];
    expect(live([...tabA, ...tabB])).toEqual({ a: 4 });
    expect(live([tabB[0], tabA[0]])).toEqual({ b: 2 });
  });

  it('ignores pages a snapshot covers, even one written after it', () => {
    const snapshot = snapshotPages([file('keep', 4)], 10 as Cursor);
    // A slow tab's page from before the snapshot still names a file removed since.
    const late = page(8, [file('gone', 7)]);
    const after = page(12, [file('new', 11)], ['keep']);
    const folded = foldFilePages([...snapshot, late, after]);
    expect(Object.fromEntries([...folded.files].map(([p, r]) => [p, r.sjid]))).toEqual({ new: 11 });
    expect(folded.snapshotCursor).toBe(10);
    expect(folded.storedRecords).toBe(1 + 2);
  });

  it('uses only the newest snapshot', () => {
    const older = snapshotPages([file('old', 1)], 5 as Cursor);
    const newer = snapshotPages([file('current', 9)], 9 as Cursor);
    expect(live([...newer, ...older])).toEqual({ current: 9 });
  });
});

describe('snapshotPages', () => {
  it('splits into parts and keeps an empty workspace as one empty part', () => {
    const files = Array.from({ length: SNAPSHOT_PART_FILES * 2 + 1 }, (_, i) => file(`f${i}`, i + 1));
    const parts = snapshotPages(files, 9 as Cursor);
    expect(parts.map((part) => part.files.length)).toEqual([SNAPSHOT_PART_FILES, SNAPSHOT_PART_FILES, 1]);
    expect(foldFilePages(parts).files.size).toBe(files.length);
    expect(snapshotPages([], 3 as Cursor)).toEqual([{ kind: 'snapshot', cursor: 3, files: [], removed: [] }]);
    expect(foldFilePages(snapshotPages([], 3 as Cursor)).snapshotCursor).toBe(3);
  });
});

describe('worthCompacting', () => {
  it('waits for superseded records to outnumber the live ones well', () => {
    expect(worthCompacting(100_000, 100_000)).toBe(false);
    expect(worthCompacting(5_000, 1)).toBe(true);
    expect(worthCompacting(2 * 100_000 + 2 * SNAPSHOT_PART_FILES + 1, 100_000)).toBe(true);
  });
});
