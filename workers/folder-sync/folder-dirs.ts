import { isFolderWorkName } from '../../src/protocol/index.ts';

/** A file in the folder as it is now. */
export interface FolderFile {
  handle: FileSystemFileHandle;
  file: File;
}

/**
 * The subfolders of a linked folder by path, created on demand and cached (a path costs one
 * `getDirectoryHandle` per segment the first time, none after). A handle goes stale when the
 * user moves or deletes the folder; `forget` drops the cache after any failure.
 */
export class FolderDirs {
  private readonly cache = new Map<string, FileSystemDirectoryHandle>();

  constructor(readonly root: FileSystemDirectoryHandle) {}

  /** The folder holding `path` ("a/b/c.txt" → "a/b"), or null when it is missing and `create` is false. */
  async parentOf(path: string, create: boolean): Promise<{ dir: FileSystemDirectoryHandle; name: string; folder: string } | null> {
    const slash = path.lastIndexOf('/');
    const folder = slash < 0 ? '' : path.slice(0, slash);
    const dir = await this.dir(folder, create);
    return dir ? { dir, name: path.slice(slash + 1), folder } : null;
  }

  async dir(folder: string, create: boolean): Promise<FileSystemDirectoryHandle | null> {
    if (folder === '') return this.root;
    const cached = this.cache.get(folder);
    if (cached) return cached;
    const slash = folder.lastIndexOf('/');
    const parent = await this.dir(slash < 0 ? '' : folder.slice(0, slash), create);
    if (!parent) return null;
    try {
      const dir = await parent.getDirectoryHandle(folder.slice(slash + 1), { create });
      this.cache.set(folder, dir);
      return dir;
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  forget(): void {
    this.cache.clear();
  }

  /**
   * Removes folders emptied by deletes, from `folder` up (the journal has no folders: one
   * whose last file went goes too). A folder holding anything stays.
   */
  async pruneEmpty(folder: string): Promise<void> {
    while (folder !== '') {
      const dir = await this.dir(folder, false);
      if (!dir) return;
      for await (const _ of dir.keys()) return;
      const slash = folder.lastIndexOf('/');
      const parentPath = slash < 0 ? '' : folder.slice(0, slash);
      const parent = await this.dir(parentPath, false);
      if (!parent) return;
      try {
        await parent.removeEntry(folder.slice(slash + 1));
      } catch {
        return; // Something appeared meanwhile, or it went already.
      }
      this.cache.delete(folder);
      folder = parentPath;
    }
  }
}

/** The file `name` in `dir` now, null when there is none; a folder of that name is an error for the caller. */
export async function fileIn(dir: FileSystemDirectoryHandle, name: string): Promise<FolderFile | null> {
  let handle: FileSystemFileHandle;
  try {
    handle = await dir.getFileHandle(name);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
  try {
    return { handle, file: await handle.getFile() };
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/** Every regular file below `dir` with its workspace path; folder sync's own work files are skipped. */
export async function* walkFolder(dir: FileSystemDirectoryHandle, prefix = ''): AsyncGenerator<{ path: string; name: string; handle: FileSystemFileHandle }> {
  for await (const [name, handle] of dir.entries()) {
    if (isFolderWorkName(name)) continue;
    const path = prefix === '' ? name : `${prefix}/${name}`;
    if (handle.kind === 'directory') yield* walkFolder(handle as FileSystemDirectoryHandle, path);
    else yield { path, name, handle: handle as FileSystemFileHandle };
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof DOMException && error.name === 'NotFoundError';
}
