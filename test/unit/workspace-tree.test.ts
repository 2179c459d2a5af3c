import { describe, expect, it } from 'vitest';
import type { FileView, FolderQuery } from '../../workers/sync-api.ts';
import { WorkspaceTree } from '../../workers/workspace-tree.ts';

const view = (path: string, size: number, mtime = 1, status: FileView['status'] = 'synced', bytesDone = status === 'synced' ? size : 0): FileView => ({
  path,
  size,
  mtime,
  status,
  bytesDone,
  bytesPerSecond: 0,
});
const query = (over: Partial<FolderQuery> = {}): FolderQuery => ({ folder: '', sort: 'name', descending: false, filter: '', offset: 0, limit: 100, ...over });
const names = (tree: WorkspaceTree, over: Partial<FolderQuery> = {}) => tree.list(query(over)).rows.map((row) => `${row.kind === 'folder' ? 'd' : 'f'}:${row.name}`);

describe('WorkspaceTree', () => {
  it('lists folders first, then files, by name with numbers in order', () => {
    const tree = new WorkspaceTree();
    tree.apply([view('b.txt', 1), view('file10', 1), view('file2', 1), view('docs/a', 1), view('art/x', 1)]);
    expect(names(tree)).toEqual(['d:art', 'd:docs', 'f:b.txt', 'f:file2', 'f:file10']);
    expect(names(tree, { descending: true })).toEqual(['d:docs', 'd:art', 'f:file10', 'f:file2', 'f:b.txt']);
  });

  it('gives each folder its size, file count and sync state from everything below it', () => {
    const tree = new WorkspaceTree();
    tree.apply([view('p/a', 10), view('p/q/b', 20, 5, 'syncing', 5), view('p/q/c', 30, 9, 'waiting')]);
    const [p] = tree.list(query()).rows;
    expect(p).toMatchObject({ kind: 'folder', path: 'p', size: 60, fileCount: 3, bytesDone: 15, status: 'syncing', mtime: 9 });
    tree.apply([view('p/q/b', 20, 5), view('p/q/c', 30, 9)]);
    expect(tree.list(query()).rows[0]).toMatchObject({ status: 'synced', bytesDone: 60 });
    expect(tree.list(query({ folder: 'p/q' })).folderSummary).toMatchObject({ path: 'p/q', size: 50, fileCount: 2 });
  });

  it('sorts by size and by modified, folders by their totals and newest file', () => {
    const tree = new WorkspaceTree();
    tree.apply([view('small', 1, 300), view('large', 100, 100), view('dir/x', 50, 500), view('dir2/y', 5, 50)]);
    expect(names(tree, { sort: 'size', descending: true })).toEqual(['d:dir', 'd:dir2', 'f:large', 'f:small']);
    expect(names(tree, { sort: 'modified' })).toEqual(['d:dir2', 'd:dir', 'f:large', 'f:small']);
  });

  it('drops a folder with its last file and tells the page the folder no longer exists', () => {
    const tree = new WorkspaceTree();
    tree.apply([view('a/b/c.txt', 1), view('top.txt', 1)]);
    tree.apply([{ path: 'a/b/c.txt', removed: true }]);
    expect(names(tree)).toEqual(['f:top.txt']);
    expect(tree.list(query({ folder: 'a/b' })).exists).toBe(false);
    expect(tree.fileCount).toBe(1);
  });

  it('filters by name below the open folder and shows matches by their path from it', () => {
    const tree = new WorkspaceTree();
    tree.apply([view('docs/Report.pdf', 1), view('docs/old/report-2.pdf', 1), view('src/main.c', 1), view('readme', 1)]);
    expect(names(tree, { filter: 'REPORT' })).toEqual(['f:docs/old/report-2.pdf', 'f:docs/Report.pdf']);
    expect(names(tree, { folder: 'docs', filter: 'old' })).toEqual(['d:old']);
    expect(names(tree, { filter: 'nothing' })).toEqual([]);
  });

  it('answers one window of a large folder, with the total for the scroll area', () => {
    const tree = new WorkspaceTree();
    tree.apply(Array.from({ length: 10_000 }, (_, i) => view(`big/f${i}`, i)));
    const page = tree.list(query({ folder: 'big', offset: 9_990, limit: 50 }));
    expect(page.total).toBe(10_000);
    expect(page.rows.map((row) => row.name)).toEqual(Array.from({ length: 10 }, (_, i) => `f${9_990 + i}`));
    const before = tree.version;
    tree.apply([view('big/f1', 1, 2, 'syncing')]);
    expect(tree.version).toBeGreaterThan(before);
  });

  it('walks the files below a folder depth first in name order, and gives its totals (for a zip)', () => {
    const tree = new WorkspaceTree();
    tree.apply([view('b/z.txt', 1), view('b/a/2.txt', 2), view('b/a/10.txt', 3), view('a.txt', 4), view('b/m.txt', 5), view('c/x', 6)]);
    expect([...tree.filesBelow('b')].map((file) => file.path)).toEqual(['b/a/2.txt', 'b/a/10.txt', 'b/m.txt', 'b/z.txt']);
    expect([...tree.filesBelow('')].map((file) => file.path)).toEqual(['b/a/2.txt', 'b/a/10.txt', 'b/m.txt', 'b/z.txt', 'c/x', 'a.txt']);
    expect([...tree.filesBelow('nope')]).toEqual([]);
    expect(tree.totalsOf('b')).toEqual({ files: 4, bytes: 11 });
    expect(tree.totalsOf('')).toEqual({ files: 6, bytes: 21 });
    expect(tree.totalsOf('nope')).toBeNull();
    // A walk under way keeps the folder as it was when reached; a file removed meanwhile is
    // still yielded (the zip skips paths without a live record).
    const walk = tree.filesBelow('b');
    expect(walk.next().value?.path).toBe('b/a/2.txt');
    tree.apply([{ path: 'b/m.txt', removed: true }, view('b/n.txt', 1)]);
    expect([...walk].map((file) => file.path)).toEqual(['b/a/10.txt', 'b/m.txt', 'b/z.txt']);
  });
});
