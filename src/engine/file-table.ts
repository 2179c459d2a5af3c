import type { FilePath, JournalEntry } from '../protocol/index.ts';
import type { FileRecord } from './types.ts';

export interface FoldResult {
  changed: FileRecord[];
  removed: FilePath[];
}

/**
 * Folds journal entries (ascending sjid) into the live file table in place, and reports
 * the net effect so the caller can persist it in one transaction. A path written then
 * deleted within the same page ends up only in `removed`.
 */
export function foldEntries(files: Map<FilePath, FileRecord>, entries: readonly JournalEntry[]): FoldResult {
  const touched = new Set<FilePath>();
  for (const entry of entries) {
    touched.add(entry.path);
    if (entry.deleted) {
      files.delete(entry.path);
    } else {
      files.set(entry.path, {
        path: entry.path,
        size: entry.size,
        mtime: entry.mtime,
        blocks: entry.blocks,
        sjid: entry.sjid,
      });
    }
  }
  const changed: FileRecord[] = [];
  const removed: FilePath[] = [];
  for (const path of touched) {
    const record = files.get(path);
    if (record) changed.push(record);
    else removed.push(path);
  }
  return { changed, removed };
}
