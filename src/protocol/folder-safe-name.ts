/**
 * Which workspace paths a folder on a user's disk can hold safely. The protocol's path rules
 * (file-path.ts) already keep every path inside its folder; these rules add what a real
 * file system refuses or silently merges, so that the browser's folder sync (and any other
 * writer of real folders) never writes a name the disk would reject, rename or fold onto a
 * different file. A refused path is listed for the user, never written.
 */

/** Windows refuses these characters in names (the separators `/` and `\` everywhere). */
const WINDOWS_FORBIDDEN = /[<>:"|?*]/;
const CONTROL = /[\u0000-\u001f\u007f]/;
/** Device names Windows reserves, alone or with any extension (`con.txt` too). */
const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i;

/** Names a folder writer uses for itself: never synced, never accepted from the journal. */
export const FOLDER_TEMP_PREFIX = '.nearsync-tmp-';
/** Chromium's File System Access API writes through `<name>.crswap` beside the target. */
export const CHROMIUM_SWAP_SUFFIX = '.crswap';

/** The rules of the folder's system: Windows adds its forbidden characters and reserved names. */
export type FolderPlatform = 'windows' | 'other';

export function isFolderWorkName(name: string): boolean {
  return name.startsWith(FOLDER_TEMP_PREFIX) || name.endsWith(CHROMIUM_SWAP_SUFFIX);
}

/** Why one path segment cannot be a name in a folder, or null when it can. */
export function unsafeNameReason(name: string, platform: FolderPlatform): string | null {
  if (name === '') return 'an empty name';
  if (name === '.' || name === '..') return `"${name}" names a folder itself`;
  if (name.includes('/') || name.includes('\\')) return 'a slash or backslash in a name';
  if (CONTROL.test(name)) return 'a control character in a name';
  if (isFolderWorkName(name)) return `a name reserved for files being written (${FOLDER_TEMP_PREFIX}…, …${CHROMIUM_SWAP_SUFFIX})`;
  if (platform === 'windows') {
    if (WINDOWS_FORBIDDEN.test(name)) return 'a character Windows does not allow in names (< > : " | ? *)';
    if (/[. ]$/.test(name)) return 'a name ending in a dot or a space, which Windows drops';
    if (WINDOWS_RESERVED.test(name)) return `"${name}" is a device name Windows reserves`;
  }
  return null;
}

/** Why a "/"-separated path cannot be written into a folder (its first bad segment), or null. */
export function unsafePathReason(path: string, platform: FolderPlatform): string | null {
  for (const segment of path.split('/')) {
    const reason = unsafeNameReason(segment, platform);
    if (reason) return reason;
  }
  return null;
}

/**
 * The key under which names merge on a case-insensitive or normalising file system (Windows,
 * macOS): `A.txt` and `a.txt`, or `é` composed and decomposed, are one file there.
 */
export function foldedName(name: string): string {
  return name.normalize('NFC').toLowerCase();
}

/**
 * Among `paths`, those that a case-insensitive or normalising folder would merge with another
 * one (anywhere along the path: `Docs/a` and `docs/b` share a folder there). The owner of a
 * folded name is the entry with the lowest `order` (the oldest journal entry), whatever order
 * they come in; every other path of that name is returned with the owner it clashes with.
 */
export function foldTwins<T extends { path: string; order: number }>(entries: Iterable<T>): Map<string, string> {
  // Owners per folded prefix: a folder name clashes as much as a file name.
  const owners = new Map<string, { path: string; order: number; exact: string }>();
  const all: T[] = [];
  for (const entry of entries) {
    all.push(entry);
    let prefix = '';
    let exact = '';
    for (const segment of entry.path.split('/')) {
      prefix = prefix === '' ? foldedName(segment) : `${prefix}/${foldedName(segment)}`;
      exact = exact === '' ? segment : `${exact}/${segment}`;
      const owner = owners.get(prefix);
      if (!owner || entry.order < owner.order) owners.set(prefix, { path: entry.path, order: entry.order, exact });
    }
  }
  const twins = new Map<string, string>();
  for (const entry of all) {
    let prefix = '';
    let exact = '';
    for (const segment of entry.path.split('/')) {
      prefix = prefix === '' ? foldedName(segment) : `${prefix}/${foldedName(segment)}`;
      exact = exact === '' ? segment : `${exact}/${segment}`;
      const owner = owners.get(prefix)!;
      if (owner.exact !== exact) {
        twins.set(entry.path, owner.path);
        break;
      }
    }
  }
  return twins;
}

/** The platform whose naming rules apply, from a user agent string. */
export function folderPlatformOf(userAgent: string): FolderPlatform {
  return /Windows/i.test(userAgent) ? 'windows' : 'other';
}
