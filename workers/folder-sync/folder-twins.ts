import { foldedName } from '../../src/protocol/index.ts';

/** Listing order of files folder sync does not track yet: after every tracked one (ordered by sjid), first listed first. */
const UNTRACKED_ORDER = Number.MAX_SAFE_INTEGER / 2;

export interface FoldOwner {
  /** The owning path's spelling of this prefix. */
  exact: string;
  path: string;
  order: number;
  /** Paths of more than one spelling share this prefix (stale records, say): any of them may own it. */
  mixed: boolean;
}

export type TwinCheck = { twin: string } | 'later' | null;

/**
 * The case and Unicode twin rule of `foldTwins` (the file folder sync tracks longest keeps the
 * name, then the first listed; a folder name clashes as much as a file name), decided while
 * the folder is walked instead of over a list of every file: a scan must not hold the folder.
 *
 * A file is decided when it is listed unless a tracked file that would own one of its folded
 * prefixes has not been listed yet: then it waits (`later`) until the walk is over and
 * `twinAfterWalk` knows every owner. Files listed later and untracked never win over one
 * listed earlier, so nothing decided early is undone. Holds the folded prefixes of the
 * records and of the listed files (strings, no handles).
 */
export class FolderTwins {
  private readonly listed = new Map<string, FoldOwner>();
  private untracked = 0;

  /** `tracked`: the folded prefixes of the tracked files (`trackedFolds`); an owner that is gone only makes a file wait. */
  constructor(private readonly tracked: ReadonlyMap<string, FoldOwner>) {}

  /** Registers `path` as listed, with its record's sjid when tracked: its twin, `later`, or null when it keeps its name. */
  check(path: string, sjid: number | undefined): TwinCheck {
    const order = sjid ?? UNTRACKED_ORDER + this.untracked++;
    claim(this.listed, path, order);
    let waits = false;
    for (const { folded, exact } of foldedPrefixes(path)) {
      const owner = this.listed.get(folded)!;
      if (owner.exact !== exact) return { twin: owner.path };
      const record = this.tracked.get(folded);
      if (record && (record.exact !== exact || record.mixed) && record.order < order) waits = true;
    }
    return waits ? 'later' : null;
  }

  /** For a file that waited: its twin among every listed file, or null when it keeps its name. */
  twinAfterWalk(path: string): string | null {
    for (const { folded, exact } of foldedPrefixes(path)) {
      const owner = this.listed.get(folded);
      if (owner && owner.exact !== exact) return owner.path;
    }
    return null;
  }
}

/** The owners of the folded prefixes of `records` (those folder sync tracks), for `FolderTwins`. */
export function trackedFolds(records: Iterable<{ path: string; sjid: number; deleted: boolean }>): Map<string, FoldOwner> {
  const owners = new Map<string, FoldOwner>();
  for (const record of records) if (!record.deleted) claim(owners, record.path, record.sjid);
  return owners;
}

/** Makes `path` (at `order`) the owner of each of its folded prefixes that no lower order owns. */
export function claim(owners: Map<string, FoldOwner>, path: string, order: number): void {
  for (const { folded, exact } of foldedPrefixes(path)) {
    const owner = owners.get(folded);
    const mixed = owner !== undefined && (owner.mixed || owner.exact !== exact);
    if (!owner || order < owner.order) owners.set(folded, { exact, path, order, mixed });
    else if (mixed) owner.mixed = true;
  }
}

/** Each prefix of `path` (folder by folder, then the file), folded and as spelled. */
export function* foldedPrefixes(path: string): Generator<{ folded: string; exact: string }> {
  let folded = '';
  let exact = '';
  for (const segment of path.split('/')) {
    folded = folded === '' ? foldedName(segment) : `${folded}/${foldedName(segment)}`;
    exact = exact === '' ? segment : `${exact}/${segment}`;
    yield { folded, exact };
  }
}
