import { lstat, mkdir, readdir, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { parseFilePath, type FilePath } from '../../protocol/index.ts';

/** Names the daemon writes while materialising: never synced, never accepted from the journal. */
export const TEMP_PREFIX = '.nearsync-tmp-';

export class UnsafePathError extends Error {
  override readonly name = 'UnsafePathError';
}

/** The key under which names that a case-insensitive or normalising filesystem would merge collide. */
export function foldName(name: string): string {
  return name.normalize('NFC').toLowerCase();
}

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

/**
 * Resolves a path from the journal (hostile input) to a place under the folder `root`,
 * refusing anything that could land elsewhere or clobber a different entry: it must pass
 * the protocol's path validator, no segment may be a daemon temp name, no parent may be a
 * symlink or a non-directory, the target may not be a symlink or a directory, no segment
 * may differ only by case or Unicode form from another entry in its directory, and the
 * parent's real path must be where it should be. With `createParents`, missing parent
 * directories are made one at a time and checked again after each mkdir.
 */
export async function resolveInFolder(
  root: string,
  rawPath: string,
  options: { createParents: boolean },
): Promise<{ path: FilePath; absolute: string; parent: string }> {
  let path: FilePath;
  try {
    path = parseFilePath(rawPath);
  } catch (error) {
    throw new UnsafePathError((error as Error).message);
  }
  const segments = path.split('/');
  if (segments.some(isTempName)) throw new UnsafePathError(`a segment starts with ${TEMP_PREFIX}, which is reserved`);
  let dir = root;
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    await refuseFoldClash(dir, segment);
    const next = join(dir, segment);
    const last = i === segments.length - 1;
    const info = await lstatOrNull(next);
    if (last) {
      if (info && info.isSymbolicLink()) throw new UnsafePathError('the target is a symlink');
      if (info && !info.isFile()) throw new UnsafePathError('the target exists and is not a regular file');
      break;
    }
    if (!info) {
      if (!options.createParents) return { path, absolute: join(dir, ...segments.slice(i)), parent: join(dir, ...segments.slice(i, -1)) };
      try {
        await mkdir(next, { mode: 0o755 });
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const made = await lstat(next);
      if (!made.isDirectory() || made.isSymbolicLink()) throw new UnsafePathError(`parent ${segments.slice(0, i + 1).join('/')} is not a directory`);
    } else if (info.isSymbolicLink()) {
      throw new UnsafePathError(`parent ${segments.slice(0, i + 1).join('/')} is a symlink`);
    } else if (!info.isDirectory()) {
      throw new UnsafePathError(`parent ${segments.slice(0, i + 1).join('/')} is not a directory`);
    }
    dir = next;
  }
  // Belt and braces against a parent swapped between the checks above and now.
  const realRoot = await realpath(root);
  const expected = join(realRoot, ...segments.slice(0, -1));
  if ((await realpath(dir)) !== expected) throw new UnsafePathError('the parent directory resolves outside the folder');
  return { path, absolute: join(dir, segments[segments.length - 1]), parent: dir };
}

async function refuseFoldClash(dir: string, segment: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  const key = foldName(segment);
  for (const name of names) {
    if (name !== segment && foldName(name) === key) {
      throw new UnsafePathError(`"${segment}" differs only by case or Unicode form from "${name}" already in the folder`);
    }
  }
}

export async function lstatOrNull(path: string) {
  try {
    return await lstat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw error;
  }
}
