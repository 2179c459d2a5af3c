import type { FileRecord } from './types.ts';
import type { Cursor, FilePath } from '../protocol/index.ts';

/**
 * A workspace's file table kept as a log of journal pages rather than one stored record per
 * file: a join of 100,000 files is 100 writes, not 100,000 (each IndexedDB request costs
 * about 0.2 ms of browser and worker time, measured: 10,000 puts 2.0 s, 10 puts of 1,000
 * records 0.13 s).
 *
 * A page holds what one journal page changed: the files it left live, with the sjid of their
 * last entry, and the paths it removed. A snapshot holds every live file at its cursor, split
 * into parts. Folding is order-free: for each path the event with the highest sjid wins, a
 * removal counting as the page's last sjid (any entry for that path between the removal and
 * the page's end is in the same page, so its fold already says so). Pages at or below the
 * newest snapshot's cursor are ignored: a slow tab may write a page after a snapshot covered
 * it, and the snapshot no longer names the files removed since.
 */
export interface FilePage {
  kind: 'page' | 'snapshot';
  /** The journal cursor after this page (the last sjid it covers). */
  cursor: Cursor;
  files: FileRecord[];
  /** Paths removed (pages only; a snapshot lists only what is live). */
  removed: FilePath[];
}

export interface FoldedFiles {
  files: Map<FilePath, FileRecord>;
  /** Records stored in the pages folded (what a compaction would save). */
  storedRecords: number;
  /** The newest snapshot's cursor, 0 without one. */
  snapshotCursor: Cursor;
}

export function foldFilePages(pages: Iterable<FilePage>): FoldedFiles {
  const all = [...pages];
  let snapshotCursor = 0 as Cursor;
  for (const page of all) if (page.kind === 'snapshot' && page.cursor > snapshotCursor) snapshotCursor = page.cursor;
  const live = new Map<FilePath, FileRecord>();
  /** The sjid of the winning removal of a path not live (so an older record cannot revive it). */
  const removedAt = new Map<FilePath, number>();
  let storedRecords = 0;
  for (const page of all) {
    if (page.kind === 'snapshot' ? page.cursor !== snapshotCursor : page.cursor <= snapshotCursor) continue;
    storedRecords += page.files.length + page.removed.length;
    for (const file of page.files) {
      const current = live.get(file.path);
      if ((current && current.sjid >= file.sjid) || (removedAt.get(file.path) ?? -1) >= file.sjid) continue;
      live.set(file.path, file);
      removedAt.delete(file.path);
    }
    for (const path of page.removed) {
      const current = live.get(path);
      if ((current && current.sjid > page.cursor) || (removedAt.get(path) ?? -1) >= page.cursor) continue;
      live.delete(path);
      removedAt.set(path, page.cursor);
    }
  }
  return { files: live, storedRecords, snapshotCursor };
}

/** Files per snapshot part: a part is one stored value, read and written whole. */
export const SNAPSHOT_PART_FILES = 1000;

/** A snapshot of `files` at `cursor`, in parts of SNAPSHOT_PART_FILES. */
export function snapshotPages(files: Iterable<FileRecord>, cursor: Cursor): FilePage[] {
  const parts: FilePage[] = [];
  let current: FileRecord[] = [];
  for (const file of files) {
    current.push(file);
    if (current.length === SNAPSHOT_PART_FILES) {
      parts.push({ kind: 'snapshot', cursor, files: current, removed: [] });
      current = [];
    }
  }
  // An empty workspace still gets one (empty) part: the snapshot's cursor must be stored.
  if (current.length > 0 || parts.length === 0) parts.push({ kind: 'snapshot', cursor, files: current, removed: [] });
  return parts;
}

/**
 * Whether the pages hold enough superseded records to be worth folding into a snapshot:
 * more than twice the live files, and more than a few pages' worth (a snapshot rewrites them all).
 */
export function worthCompacting(storedRecords: number, liveFiles: number): boolean {
  return storedRecords > 2 * liveFiles + 2 * SNAPSHOT_PART_FILES;
}
