import { foldTwins, foldedName, unsafePathReason, type FolderPlatform } from '../../src/protocol/index.ts';
import { foldedPrefixes } from './folder-twins.ts';

/** A live journal entry as far as its name is concerned: `order` (its sjid) decides between twins, the oldest keeps the name. */
export interface NamedEntry {
  path: string;
  order: number;
}

/** One folded prefix of live paths: its one spelling and how many live paths have it, or `mixed` when twins share it. */
type PrefixUse = { exact: string; count: number } | 'mixed';

/**
 * Which live journal paths the folder cannot hold (unsafe names; case and Unicode twins, where
 * the oldest entry keeps the name, as `foldTwins`), kept change by change: a new, edited or
 * removed entry costs its own path's prefixes, not the whole journal. Only a change that
 * touches a prefix two spellings share (twins, rare) makes the caller look at every entry
 * again (`rebuild`): the owner of such a prefix depends on the order of all of them.
 */
export class JournalNames {
  /** Live paths not written into the folder, with the reason. */
  readonly refused = new Map<string, string>();
  /** Folded path → the live path that holds that name in the folder. */
  readonly owners = new Map<string, string>();
  private prefixes = new Map<string, PrefixUse>();

  constructor(private readonly platform: FolderPlatform) {}

  /** Starts over from every live entry. */
  rebuild(live: readonly NamedEntry[]): void {
    this.refused.clear();
    this.owners.clear();
    this.prefixes.clear();
    let twinsPossible = false;
    for (const entry of live) {
      for (const { folded, exact } of foldedPrefixes(entry.path)) {
        const use = this.prefixes.get(folded);
        if (use === undefined) this.prefixes.set(folded, { exact, count: 1 });
        else if (use === 'mixed') continue;
        else if (use.exact === exact) use.count += 1;
        else {
          this.prefixes.set(folded, 'mixed');
          twinsPossible = true;
        }
      }
    }
    // Without two spellings of any prefix there are no twins: the full rule is only run when needed.
    const twins = twinsPossible ? foldTwins(live) : new Map<string, string>();
    for (const entry of live) this.name(entry.path, twins.get(entry.path));
  }

  /**
   * Applies changed entries (`entry` undefined: the path left the journal). Returns false when
   * a change touches a prefix twins share (or makes one): then nothing is decided and the
   * caller rebuilds from every live entry.
   */
  update(changes: ReadonlyArray<{ path: string; entry: NamedEntry | undefined }>): boolean {
    for (const { path, entry } of changes) {
      const wasLive = this.refused.has(path) || this.owners.get(foldedPath(path)) === path;
      if (!wasLive && !entry) continue;
      const steps = [...foldedPrefixes(path)];
      // An entry that stays may have a new order; one that comes or goes changes the counts.
      if (steps.some(({ folded, exact }) => this.clashes(folded, exact))) return false;
      if (wasLive && entry) continue;
      if (entry) {
        for (const { folded, exact } of steps) {
          const use = this.prefixes.get(folded) as { exact: string; count: number } | undefined;
          if (use) use.count += 1;
          else this.prefixes.set(folded, { exact, count: 1 });
        }
        this.name(path, undefined);
      } else {
        for (const { folded } of steps) {
          const use = this.prefixes.get(folded) as { exact: string; count: number };
          if (--use.count === 0) this.prefixes.delete(folded);
        }
        this.refused.delete(path);
        this.owners.delete(foldedPath(path));
      }
    }
    return true;
  }

  /** Whether the folded prefix is, or would become, shared by two spellings. */
  private clashes(folded: string, exact: string): boolean {
    const use = this.prefixes.get(folded);
    return use === 'mixed' || (use !== undefined && use.exact !== exact);
  }

  private name(path: string, twin: string | undefined): void {
    const reason = unsafePathReason(path, this.platform) ?? (twin === undefined ? null : `differs only by case or Unicode form from "${twin}", an older entry`);
    if (reason) this.refused.set(path, `not written into the folder: ${reason}`);
    else this.owners.set(foldedPath(path), path);
  }
}

export function foldedPath(path: string): string {
  return path.split('/').map(foldedName).join('/');
}
