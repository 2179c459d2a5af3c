import { describe, expect, it } from 'vitest';
import { foldTwins } from '../../src/protocol/index.ts';
import { FolderTwins, trackedFolds } from '../../workers/folder-sync/folder-twins.ts';

/**
 * The walk-time twin check must decide exactly as `foldTwins` over the whole listing would
 * (tracked files by sjid first, then untracked ones in listing order), without a list of
 * every file, and never take back a file it let through while the walk went on.
 */

interface Listed {
  path: string;
  sjid?: number;
}

/** Decisions of the walk: a twin per refused path, made at listing time or after the walk. */
function walkDecisions(listing: readonly Listed[], records: { path: string; sjid: number; deleted: boolean }[]): Map<string, string> {
  const twins = new FolderTwins(trackedFolds(records));
  const decided = new Map<string, string>();
  const later: string[] = [];
  for (const { path, sjid } of listing) {
    const check = twins.check(path, sjid);
    if (check === 'later') later.push(path);
    else if (check) decided.set(path, check.twin);
  }
  for (const path of later) {
    const twin = twins.twinAfterWalk(path);
    if (twin !== null) decided.set(path, twin);
  }
  return decided;
}

/** The reference: `foldTwins` over the whole listing, tracked files first by sjid, then listing order. */
function referenceDecisions(listing: readonly Listed[]): Map<string, string> {
  return foldTwins(listing.map(({ path, sjid }, index) => ({ path, order: sjid ?? Number.MAX_SAFE_INTEGER / 2 + index })));
}

const refusedSet = (decisions: Map<string, string>) => [...decisions.keys()].sort();

describe('case and Unicode twins decided during a folder walk', () => {
  it('an untracked file listed before the tracked file that owns its name waits, then is refused', () => {
    const records = [{ path: 'Docs/Report.txt', sjid: 5, deleted: false }];
    const listing: Listed[] = [{ path: 'docs/report.TXT' }, { path: 'Docs/Report.txt', sjid: 5 }];
    const twins = new FolderTwins(trackedFolds(records));
    expect(twins.check('docs/report.TXT', undefined)).toBe('later');
    expect(twins.check('Docs/Report.txt', 5)).toBeNull();
    expect(twins.twinAfterWalk('docs/report.TXT')).toBe('Docs/Report.txt');
    expect(walkDecisions(listing, records)).toEqual(referenceDecisions(listing));
  });

  it('a tracked file renamed by case only (the old name gone) keeps its new name', () => {
    const records = [{ path: 'notes.txt', sjid: 3, deleted: false }];
    expect(walkDecisions([{ path: 'Notes.txt' }], records)).toEqual(new Map());
  });

  it('a folder name clashes too: a file under a twin folder is refused at listing time', () => {
    const listing: Listed[] = [{ path: 'Photos/a.jpg' }, { path: 'photos/b.jpg' }, { path: 'cafe\u0301/x' }, { path: 'caf\u00e9/y' }];
    expect(walkDecisions(listing, [])).toEqual(referenceDecisions(listing));
    expect(refusedSet(walkDecisions(listing, []))).toEqual(['caf\u00e9/y', 'photos/b.jpg']);
  });

  it('a record of a file since gone, spelled like an untracked file, does not let it through before an older tracked twin is listed', () => {
    const records = [
      { path: 'dir/gone.txt', sjid: 1, deleted: false },
      { path: 'Dir/kept.txt', sjid: 5, deleted: false },
    ];
    const listing: Listed[] = [{ path: 'dir/new.txt' }, { path: 'Dir/kept.txt', sjid: 5 }];
    expect(walkDecisions(listing, records)).toEqual(referenceDecisions(listing));
    expect(refusedSet(walkDecisions(listing, records))).toEqual(['dir/new.txt']);
  });

  it('agrees with foldTwins over many random listings with tracked and untracked twins', () => {
    let seed = 12345;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const spellings = [['a', 'A'], ['dir', 'Dir', 'DIR'], ['caf\u00e9', 'cafe\u0301', 'CAF\u00c9'], ['x.txt', 'X.txt']];
    for (let round = 0; round < 500; round++) {
      const paths = new Set<string>();
      const count = 1 + random(8);
      for (let i = 0; i < count; i++) {
        const depth = 1 + random(3);
        const segments = Array.from({ length: depth }, () => {
          const group = spellings[random(spellings.length)];
          return group[random(group.length)];
        });
        paths.add(segments.join('/'));
      }
      // Some tracked (distinct sjids), in a random listing order.
      const listing: Listed[] = [...paths].map((path) => (random(2) === 0 ? { path, sjid: 1 + random(1000) } : { path }));
      const sjids = new Set<number>();
      for (const entry of listing) {
        if (entry.sjid === undefined) continue;
        while (sjids.has(entry.sjid)) entry.sjid += 1;
        sjids.add(entry.sjid);
      }
      for (let i = listing.length - 1; i > 0; i--) {
        const j = random(i + 1);
        [listing[i], listing[j]] = [listing[j], listing[i]];
      }
      const records = listing.filter((entry) => entry.sjid !== undefined).map((entry) => ({ path: entry.path, sjid: entry.sjid!, deleted: false }));
      // Records of files no longer in the folder (any spelling, any age): they must not change any decision.
      for (let stale = random(3); stale > 0; stale--) {
        const group = spellings[random(spellings.length)];
        const path = `${group[random(group.length)]}/${spellings[3][random(2)]}`;
        if (!paths.has(path)) records.push({ path, sjid: random(1000), deleted: false });
      }
      const walk = walkDecisions(listing, records);
      const reference = referenceDecisions(listing);
      expect(refusedSet(walk), JSON.stringify(listing)).toEqual(refusedSet(reference));
    }
  });
});
