import { GcNudge } from './gc-nudge.ts';

/** A file found below a dropped or picked folder: opened, or why it could not be. */
export type FoundFile = { path: string; file: File } | { path: string; error: unknown };

/** Files opened at once while walking: each `getFile()` is a round trip to the browser process. */
const OPEN_AT_ONCE = 16;
/** Files per chunk handed to the upload queue (or the folder sync scan). */
const CHUNK_FILES = 250;

/**
 * Walks dropped or picked folders depth first and yields their files in chunks, lazily: the
 * upload queue pulls the next chunk only when it wants more, so the walk stays a bounded
 * distance ahead of the uploads whatever the folder's size.
 *
 * *Why lazily:* each file handle and each opened File costs the browser process a few KiB
 * until the worker's garbage collector drops its wrapper (measured, Chromium 156, 100,000
 * files: holding every file handle grew the browser process by 518 MiB and the renderer by
 * 499 MiB), so no list of every file is ever built. Paths are `<folder name>/<relative path>`,
 * "/" separated, as a folder picker gives them; the queue validates them.
 */
export function walkFolders(roots: readonly FileSystemDirectoryHandle[]): AsyncGenerator<FoundFile[]> {
  return walkTrees(roots.map((handle) => ({ handle, path: handle.name })));
}

/** A folder to walk and the path its files' paths start with ('' for none). */
export interface WalkStart {
  handle: FileSystemDirectoryHandle;
  path: string;
}

/**
 * The walk of `walkFolders` from any folders, with paths below each start's `path`. Entries
 * `skip` names (files or folders) are left out. A folder that cannot be listed is one entry
 * `{ path: '<folder>/', error }` (its path ends in "/"; '/' for a start at '').
 */
export async function* walkTrees(starts: readonly WalkStart[], skip: (name: string) => boolean = () => false): AsyncGenerator<FoundFile[]> {
  const nudge = new GcNudge();
  const stack: WalkStart[] = [...starts].reverse();
  let chunk: FoundFile[] = [];
  let opening: { path: string; handle: FileSystemFileHandle }[] = [];
  const openPending = async () => {
    const opened = await Promise.all(opening.map(({ path, handle }) => openFile(path, handle)));
    opening = [];
    chunk.push(...opened);
    nudge.counted(opened.length);
  };
  while (stack.length > 0) {
    const { handle: directory, path: folder } = stack.pop()!;
    const subfolders: WalkStart[] = [];
    try {
      for await (const entry of directory.values()) {
        if (skip(entry.name)) continue;
        const path = folder === '' ? entry.name : `${folder}/${entry.name}`;
        if (entry.kind === 'directory') {
          subfolders.push({ handle: entry as FileSystemDirectoryHandle, path });
          continue;
        }
        opening.push({ path, handle: entry as FileSystemFileHandle });
        if (opening.length >= OPEN_AT_ONCE) await openPending();
        if (chunk.length >= CHUNK_FILES) {
          yield chunk;
          chunk = [];
        }
      }
    } catch (error) {
      // A folder removed or made unreadable meanwhile: its files cannot be read; say which.
      chunk.push({ path: `${folder}/`, error });
    }
    // Depth first in listing order: the first subfolder is walked next.
    for (let i = subfolders.length - 1; i >= 0; i--) stack.push(subfolders[i]);
  }
  await openPending();
  if (chunk.length > 0) yield chunk;
}

async function openFile(path: string, handle: FileSystemFileHandle): Promise<FoundFile> {
  try {
    return { path, file: await handle.getFile() };
  } catch (error) {
    return { path, error };
  }
}
