import { describe, expect, it } from 'vitest';
import type { FolderPlatform } from '../../src/protocol/index.ts';
import { JournalNames, type NamedEntry } from '../../workers/folder-sync/journal-names.ts';

/**
 * The journal's names, kept change by change, must decide exactly as starting over from every
 * live entry (unsafe names refused; of case or Unicode twins the oldest keeps the name), and
 * ask for that start-over only when twins are involved.
 */

function rebuilt(live: Map<string, number>, platform: FolderPlatform = 'other'): JournalNames {
  const names = new JournalNames(platform);
  names.rebuild([...live].map(([path, order]) => ({ path, order })));
  return names;
}

function decisions(names: JournalNames): { refused: [string, string][]; owners: [string, string][] } {
  return { refused: [...names.refused].sort(), owners: [...names.owners].sort() };
}

/** A small deterministic generator, so a failure replays. */
function lcg(seed: number): () => number {
  let state = seed;
  return () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

describe('JournalNames', () => {
  it('applies new, edited and removed entries without a rebuild when no twins are near', () => {
    const names = new JournalNames('other');
    names.rebuild([
      { path: 'docs/a.txt', order: 1 },
      { path: 'docs/b.txt', order: 2 },
    ]);
    expect(names.update([{ path: 'docs/c.txt', entry: { path: 'docs/c.txt', order: 3 } }])).toBe(true);
    expect(names.update([{ path: 'docs/a.txt', entry: { path: 'docs/a.txt', order: 4 } }])).toBe(true);
    expect(names.update([{ path: 'docs/b.txt', entry: undefined }])).toBe(true);
    expect(names.update([{ path: 'bad/..', entry: { path: 'bad/..', order: 5 } }])).toBe(true);
    expect([...names.owners.values()].sort()).toEqual(['docs/a.txt', 'docs/c.txt']);
    expect([...names.refused.keys()]).toEqual(['bad/..']);
    // The folder docs is still used by two files: removing one keeps its count right.
    expect(names.update([{ path: 'docs/a.txt', entry: undefined }])).toBe(true);
    expect(names.update([{ path: 'DOCS/x.txt', entry: { path: 'DOCS/x.txt', order: 6 } }])).toBe(false);
    expect(names.update([{ path: 'docs/c.txt', entry: undefined }])).toBe(true);
    // Nothing spells the folder "docs" any more: "DOCS" is no twin now.
    expect(names.update([{ path: 'DOCS/x.txt', entry: { path: 'DOCS/x.txt', order: 6 } }])).toBe(true);
    expect([...names.owners.values()]).toEqual(['DOCS/x.txt']);
  });

  it('asks for a rebuild when an edit touches a twin, and then decides by order', () => {
    const live = new Map([
      ['Read.md', 1],
      ['read.md', 2],
    ]);
    const names = rebuilt(live);
    expect(names.refused.get('read.md')).toMatch(/Read\.md/);
    expect(names.update([{ path: 'Read.md', entry: { path: 'Read.md', order: 3 } }])).toBe(false);
  });

  it('matches a full rebuild over random changes', () => {
    const random = lcg(42);
    const spellings = ['a', 'A', 'b', 'B', 'é', 'e\u0301', 'c', 'CON', '..'];
    const pathOf = () => Array.from({ length: 1 + Math.floor(random() * 3) }, () => spellings[Math.floor(random() * spellings.length)]).join('/');
    for (let round = 0; round < 80; round++) {
      const live = new Map<string, number>();
      let order = 1;
      const names = new JournalNames('windows');
      names.rebuild([]);
      for (let step = 0; step < 30; step++) {
        // As the engine's feed: each changed path once, with what the journal holds now.
        const changed = new Set<string>();
        for (let k = 0; k < 1 + Math.floor(random() * 3); k++) {
          const path = random() < 0.4 && live.size > 0 ? [...live.keys()][Math.floor(random() * live.size)] : pathOf();
          if (random() < 0.3) live.delete(path);
          else live.set(path, order++);
          changed.add(path);
        }
        const batch = [...changed].map((path): { path: string; entry: NamedEntry | undefined } => {
          const at = live.get(path);
          return { path, entry: at === undefined ? undefined : { path, order: at } };
        });
        if (!names.update(batch)) names.rebuild([...live].map(([path, at]) => ({ path, order: at })));
        expect(decisions(names)).toEqual(decisions(rebuilt(live, 'windows')));
      }
    }
  });
});
