import type { FileSyncStatus, FileView, FolderListing, FolderQuery, ListingRow } from './sync-api.ts';

/** One file's state as the engine reports it, or its removal. */
export type FileDelta = FileView | { path: string; removed: true };

interface FileEntry {
  kind: 'file';
  name: string;
  parent: FolderNode;
  view: FileView;
}

interface FolderNode {
  kind: 'folder';
  name: string;
  path: string;
  parent: FolderNode | null;
  folders: Map<string, FolderNode>;
  files: Map<string, FileEntry>;
  /** Over every file below (aggregates kept exact, change by change). */
  totalBytes: number;
  doneBytes: number;
  fileCount: number;
  incomplete: number;
  syncing: number;
  /** Newest mtime below; recomputed on demand after a removal (`mtimeStale`). */
  mtime: number;
  mtimeStale: boolean;
  /** Bumped when what is below changes shape or sort keys (membership, sizes, mtimes). */
  shapeVersion: number;
  sorted: { key: string; version: number; children: Array<FolderNode | FileEntry> } | null;
}

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
const MAX_LIMIT = 500;

/**
 * The workspace as a folder tree with per-folder aggregates, fed with per-file deltas. Every
 * delta costs O(depth); a listing costs O(rows asked) plus a sort of one folder when its
 * shape changed, so neither grows with the workspace's size. The page asks only for the rows
 * on screen.
 */
export class WorkspaceTree {
  private readonly root: FolderNode = newFolder('', '', null);
  private readonly byPath = new Map<string, FileEntry>();
  /** Bumped on any change: the page re-asks for its rows when it moves. */
  private versionValue = 0;
  private filterCache: { folder: FolderNode; filter: string; sortKey: string; shape: number; rows: Array<FolderNode | FileEntry> } | null = null;

  get version(): number {
    return this.versionValue;
  }

  get fileCount(): number {
    return this.root.fileCount;
  }

  clear(): void {
    for (const path of [...this.byPath.keys()]) this.remove(path);
    this.versionValue++;
  }

  apply(deltas: readonly FileDelta[]): void {
    if (deltas.length === 0) return;
    for (const delta of deltas) {
      if ('removed' in delta) this.remove(delta.path);
      else this.upsert(delta);
    }
    this.versionValue++;
  }

  /** Every file (a full view for a tab that starts mirroring). */
  allFiles(): FileView[] {
    return [...this.byPath.values()].map((entry) => entry.view);
  }

  /** A folder's file count and size ('' is the whole workspace), null when it does not exist. */
  totalsOf(folder: string): { files: number; bytes: number } | null {
    const node = this.findFolder(folder);
    return node ? { files: node.fileCount, bytes: node.totalBytes } : null;
  }

  /**
   * Every file below a folder, depth first in the folder view's name order (folders first),
   * walked lazily: each folder's sorted children are the cached arrays the view lists from,
   * replaced (not changed) when the tree changes, so a long walk (a zip) sees each folder as
   * it was when reached.
   */
  *filesBelow(folder: string): Generator<FileView> {
    const start = this.findFolder(folder);
    if (!start) return;
    const byName: FolderQuery = { folder, sort: 'name', descending: false, filter: '', offset: 0, limit: 0 };
    const walk = function* (this: WorkspaceTree, node: FolderNode): Generator<FileView> {
      for (const child of this.sortedChildren(node, byName, 'name:asc')) {
        if (child.kind === 'file') yield child.view;
        else yield* walk.call(this, child);
      }
    };
    yield* walk.call(this, start);
  }

  list(query: FolderQuery): FolderListing {
    const folder = this.findFolder(query.folder);
    const offset = Math.max(0, Math.floor(query.offset));
    const limit = Math.min(MAX_LIMIT, Math.max(0, Math.floor(query.limit)));
    if (!folder) {
      return { folder: query.folder, exists: false, total: 0, offset, rows: [], version: this.versionValue, folderSummary: null };
    }
    const ordered = this.ordered(folder, query);
    const rows = ordered.slice(offset, offset + limit).map((child) => toRow(child, folder));
    return {
      folder: folder.path,
      exists: true,
      total: ordered.length,
      offset,
      rows,
      version: this.versionValue,
      folderSummary: folder === this.root ? null : toRow(folder, folder.parent!),
    };
  }

  private ordered(folder: FolderNode, query: FolderQuery): Array<FolderNode | FileEntry> {
    const sortKey = `${query.sort}:${query.descending ? 'desc' : 'asc'}`;
    const filter = query.filter.trim().toLocaleLowerCase();
    if (!filter) return this.sortedChildren(folder, query, sortKey);
    const cached = this.filterCache;
    if (cached && cached.folder === folder && cached.filter === filter && cached.sortKey === sortKey && cached.shape === folder.shapeVersion) {
      return cached.rows;
    }
    const matches: Array<FolderNode | FileEntry> = [];
    const walk = (node: FolderNode) => {
      for (const child of node.folders.values()) {
        if (child.name.toLocaleLowerCase().includes(filter)) matches.push(child);
        walk(child);
      }
      for (const entry of node.files.values()) if (entry.name.toLocaleLowerCase().includes(filter)) matches.push(entry);
    };
    walk(folder);
    matches.sort(comparator(query));
    this.filterCache = { folder, filter, sortKey, shape: folder.shapeVersion, rows: matches };
    return matches;
  }

  private sortedChildren(folder: FolderNode, query: FolderQuery, sortKey: string): Array<FolderNode | FileEntry> {
    const cached = folder.sorted;
    if (cached && cached.key === sortKey && cached.version === folder.shapeVersion) return cached.children;
    const children: Array<FolderNode | FileEntry> = [...folder.folders.values(), ...folder.files.values()];
    if (query.sort === 'modified') for (const child of folder.folders.values()) freshMtime(child);
    children.sort(comparator(query));
    folder.sorted = { key: sortKey, version: folder.shapeVersion, children };
    return children;
  }

  private findFolder(path: string): FolderNode | null {
    if (path === '') return this.root;
    let node: FolderNode | undefined = this.root;
    for (const segment of path.split('/')) {
      node = node.folders.get(segment);
      if (!node) return null;
    }
    return node;
  }

  private upsert(view: FileView): void {
    const existing = this.byPath.get(view.path);
    if (existing) {
      const before = existing.view;
      existing.view = view;
      const reshaped = before.size !== view.size || before.mtime !== view.mtime;
      adjust(existing.parent, before, -1, reshaped);
      adjust(existing.parent, view, +1, reshaped);
      return;
    }
    const segments = view.path.split('/');
    const name = segments.pop()!;
    let folder = this.root;
    for (const segment of segments) {
      let child = folder.folders.get(segment);
      if (!child) {
        child = newFolder(segment, folder.path ? `${folder.path}/${segment}` : segment, folder);
        folder.folders.set(segment, child);
      }
      folder = child;
    }
    const entry: FileEntry = { kind: 'file', name, parent: folder, view };
    folder.files.set(name, entry);
    this.byPath.set(view.path, entry);
    adjust(folder, view, +1, true);
  }

  private remove(path: string): void {
    const entry = this.byPath.get(path);
    if (!entry) return;
    this.byPath.delete(path);
    const folder = entry.parent;
    folder.files.delete(entry.name);
    adjust(folder, entry.view, -1, true);
    // Empty folders go with their last file (folders exist only as paths of files).
    let node: FolderNode | null = folder;
    while (node && node.parent && node.fileCount === 0) {
      node.parent.folders.delete(node.name);
      bumpShape(node.parent);
      node = node.parent;
    }
  }
}

function newFolder(name: string, path: string, parent: FolderNode | null): FolderNode {
  return {
    kind: 'folder', name, path, parent, folders: new Map(), files: new Map(),
    totalBytes: 0, doneBytes: 0, fileCount: 0, incomplete: 0, syncing: 0,
    mtime: 0, mtimeStale: false, shapeVersion: 0, sorted: null,
  };
}

/** Adds (sign +1) or takes away (-1) one file's contribution to its folder and every ancestor. */
function adjust(folder: FolderNode, view: FileView, sign: 1 | -1, reshaped: boolean): void {
  // An online-only file not stored here is as it should be: it holds no folder back from "synced".
  const incomplete = view.status === 'synced' || view.status === 'online' ? 0 : 1;
  const syncing = view.status === 'syncing' ? 1 : 0;
  for (let node: FolderNode | null = folder; node; node = node.parent) {
    node.totalBytes += sign * view.size;
    node.doneBytes += sign * view.bytesDone;
    node.fileCount += sign;
    node.incomplete += sign * incomplete;
    node.syncing += sign * syncing;
    if (sign > 0) {
      if (view.mtime > node.mtime) node.mtime = view.mtime;
    } else if (view.mtime >= node.mtime) {
      node.mtimeStale = true;
    }
    // Progress alone reorders nothing; sizes and mtimes are sort keys of every folder above.
    if (reshaped) node.shapeVersion++;
  }
}

function bumpShape(folder: FolderNode): void {
  for (let node: FolderNode | null = folder; node; node = node.parent) node.shapeVersion++;
}

function freshMtime(folder: FolderNode): number {
  if (!folder.mtimeStale) return folder.mtime;
  let newest = 0;
  for (const entry of folder.files.values()) newest = Math.max(newest, entry.view.mtime);
  for (const child of folder.folders.values()) newest = Math.max(newest, freshMtime(child));
  folder.mtime = newest;
  folder.mtimeStale = false;
  return newest;
}

function folderStatus(folder: FolderNode): FileSyncStatus {
  if (folder.incomplete === 0) return 'synced';
  return folder.syncing > 0 ? 'syncing' : 'waiting';
}

function toRow(child: FolderNode | FileEntry, listed: FolderNode): ListingRow {
  if (child.kind === 'file') {
    // Under a filter, files from deeper folders show their path from the listed folder.
    const relative = child.parent === listed ? child.name : child.view.path.slice(listed.path ? listed.path.length + 1 : 0);
    return { kind: 'file', name: relative, ...child.view };
  }
  const relative = child.parent === listed ? child.name : child.path.slice(listed.path ? listed.path.length + 1 : 0);
  return {
    kind: 'folder',
    name: relative,
    path: child.path,
    size: child.totalBytes,
    mtime: freshMtime(child),
    status: folderStatus(child),
    bytesDone: child.doneBytes,
    bytesPerSecond: 0,
    fileCount: child.fileCount,
  };
}

/** Folders first, then the chosen key, then name, so equal keys keep a stable order. */
function comparator(query: FolderQuery): (a: FolderNode | FileEntry, b: FolderNode | FileEntry) => number {
  const direction = query.descending ? -1 : 1;
  const size = (node: FolderNode | FileEntry) => (node.kind === 'folder' ? node.totalBytes : node.view.size);
  const mtime = (node: FolderNode | FileEntry) => (node.kind === 'folder' ? node.mtime : node.view.mtime);
  const name = (node: FolderNode | FileEntry) => (node.kind === 'folder' ? node.path : node.view.path);
  return (a, b) => {
    if (a.kind !== b.kind) return a.kind === 'folder' ? -1 : 1;
    let order = 0;
    if (query.sort === 'size') order = size(a) - size(b);
    else if (query.sort === 'modified') order = mtime(a) - mtime(b);
    if (order === 0) order = collator.compare(name(a), name(b));
    return order * direction;
  };
}
