import type { FilePath } from '../protocol/index.ts';

/**
 * Where a workspace's files live on this device: `keep` (every block stored and kept, the
 * default) or `online` (listed, fetched only when read; the blocks fetched for reading sit in
 * a bounded cache that may be evicted).
 */
export type KeepMode = 'keep' | 'online';

/** One setting: a folder of the workspace ('' is the whole workspace) and its mode. */
export interface KeepSetting {
  folder: string;
  mode: KeepMode;
}

/**
 * The settings of one workspace on this device. A file's mode is that of the nearest folder
 * above it that has a setting, the workspace's own setting ('') being the base and `keep`
 * when nothing is set. Resolution walks the file's ancestors: O(depth), no scan.
 */
export class KeepPolicy {
  private readonly byFolder: ReadonlyMap<string, KeepMode>;

  constructor(settings: Iterable<KeepSetting> = []) {
    const map = new Map<string, KeepMode>();
    for (const { folder, mode } of settings) map.set(trimFolder(folder), mode);
    this.byFolder = map;
  }

  /** The mode deciding for `path` (a file's path or a folder's). */
  modeOf(path: FilePath | string): KeepMode {
    let end = path.length;
    // The path itself first when it names a folder with a setting, then each ancestor.
    for (;;) {
      const mode = this.byFolder.get(path.slice(0, end));
      if (mode) return mode;
      if (end === 0) return 'keep';
      end = path.lastIndexOf('/', end - 1);
      if (end < 0) end = 0;
    }
  }

  isKept(path: FilePath | string): boolean {
    return this.modeOf(path) === 'keep';
  }

  /** Whether any file could be online only (some setting says so). */
  get mayHaveOnlineOnly(): boolean {
    for (const mode of this.byFolder.values()) if (mode === 'online') return true;
    return false;
  }

  /** The settings, sorted by folder. */
  settings(): KeepSetting[] {
    return [...this.byFolder].map(([folder, mode]) => ({ folder, mode })).sort((a, b) => (a.folder < b.folder ? -1 : a.folder > b.folder ? 1 : 0));
  }

  /**
   * A policy with `folder` set to `mode`. Settings below it are dropped (the user chose for
   * the whole folder); `null` removes the folder's own setting, so it follows its parent.
   */
  with(folder: string, mode: KeepMode | null): KeepPolicy {
    const target = trimFolder(folder);
    const next = this.settings().filter((setting) => setting.folder !== target && !isBelow(setting.folder, target));
    if (mode) next.push({ folder: target, mode });
    // A root `keep` is the default: not stored.
    return new KeepPolicy(next.filter((setting) => !(setting.folder === '' && setting.mode === 'keep')));
  }
}

function trimFolder(folder: string): string {
  return folder.replace(/^\/+|\/+$/g, '');
}

function isBelow(folder: string, ancestor: string): boolean {
  return ancestor === '' ? folder !== '' : folder.startsWith(`${ancestor}/`);
}

/** Checks settings read from storage or given by the page; throws on anything else. */
export function parseKeepSettings(value: unknown): KeepSetting[] {
  if (!Array.isArray(value)) throw new TypeError('keep settings must be an array');
  if (value.length > MAX_KEEP_SETTINGS) throw new RangeError(`at most ${MAX_KEEP_SETTINGS} keep settings`);
  return value.map((item, index) => {
    if (typeof item !== 'object' || item === null) throw new TypeError(`keep setting ${index} must be an object`);
    const { folder, mode } = item as Record<string, unknown>;
    if (typeof folder !== 'string' || folder.length > 4096) throw new TypeError(`keep setting ${index}: folder must be a string`);
    if (mode !== 'keep' && mode !== 'online') throw new TypeError(`keep setting ${index}: mode must be "keep" or "online"`);
    return { folder: trimFolder(folder), mode };
  });
}

const MAX_KEEP_SETTINGS = 10_000;
