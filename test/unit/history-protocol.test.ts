import { describe, expect, it } from 'vitest';
import { ValidationError, parseCommitRequest, parseConflictCurrent, parseFilePath, parseHistoryResponse } from '../../src/protocol/index.ts';

const H = (c: string) => c.repeat(64);
const version = (sjid: number, extra: Record<string, unknown> = {}) => ({
  sjid,
  path: 'docs/a.txt',
  size: 5,
  mtime: 1,
  blocks: [H('a')],
  deleted: false,
  device: 'Ann',
  ...extra,
});
const path = parseFilePath('docs/a.txt');

describe('history answers from a server are checked', () => {
  it('accepts versions of the asked path, newest first, labels or null', () => {
    const page = parseHistoryResponse({ versions: [version(9), version(4, { device: null, size: 0, blocks: [], deleted: true })], more: true }, path);
    expect(page.versions.map((v) => [v.sjid, v.device, v.deleted])).toEqual([
      [9, 'Ann', false],
      [4, null, true],
    ]);
    expect(page.more).toBe(true);
    expect(parseHistoryResponse({ versions: [], more: false }, path)).toEqual({ versions: [], more: false });
    // The server's commit time when it says one; null from an older server that does not.
    const timed = parseHistoryResponse({ versions: [version(9, { committedAt: 1_765_011_000_000 }), version(4, { committedAt: null })], more: false }, path);
    expect(timed.versions.map((v) => v.committedAt)).toEqual([1_765_011_000_000, null]);
    expect(page.versions[0].committedAt).toBeNull();
  });

  it('refuses another path, a wrong order, a page past `before`, bad labels and malformed entries', () => {
    const bad: unknown[] = [
      { versions: [version(3, { path: 'other' })], more: false },
      { versions: [version(3), version(5)], more: false },
      { versions: [version(3), version(3)], more: false },
      { versions: [version(3, { device: 'a\u202eb' })], more: false },
      { versions: [version(3, { device: 'x'.repeat(41) })], more: false },
      { versions: [version(3, { blocks: ['nope'] })], more: false },
      { versions: [version(3, { committedAt: -1 })], more: false },
      { versions: [version(3, { committedAt: 1.5 })], more: false },
      { versions: [version(3, { committedAt: '1765011000000' })], more: false },
      { versions: [version(3, { committedAt: 1e300 })], more: false },
      { versions: [version(0)], more: false },
      { versions: [version(3)] },
      { versions: Array.from({ length: 1001 }, (_, i) => version(2000 - i)), more: false },
      null,
    ];
    for (const body of bad) expect(() => parseHistoryResponse(body, path), JSON.stringify(body)?.slice(0, 80)).toThrow(ValidationError);
    expect(() => parseHistoryResponse({ versions: [version(7)], more: false }, path, 7)).toThrow(/below the one before/);
  });

  it('checks a conflict\'s current entry: the committed path, live, or null', () => {
    expect(parseConflictCurrent(null, path)).toBeNull();
    expect(parseConflictCurrent(version(2), path)?.sjid).toBe(2);
    expect(() => parseConflictCurrent(version(2, { path: 'elsewhere' }), path)).toThrow(ValidationError);
    expect(() => parseConflictCurrent(version(2, { size: 0, blocks: [], deleted: true }), path)).toThrow(ValidationError);
  });
});

describe('commit requests', () => {
  const base = { path: 'a', size: 1, mtime: 0, blocks: [H('b')] };
  it('take an optional parent and device label, normalised', () => {
    expect(parseCommitRequest(base)).toEqual({ ...base, deleted: false });
    expect(parseCommitRequest({ ...base, parent: 0, device: '  Zoe\u0301  ' })).toEqual({ ...base, deleted: false, parent: 0, device: 'Zoé' });
  });
  it('refuse a parent that is not a cursor and a device that is not a short printable label', () => {
    for (const extra of [{ parent: -1 }, { parent: 1.5 }, { parent: '3' }, { device: '' }, { device: 'a\nb' }, { device: 'a\u2066b' }, { device: 'x'.repeat(41) }]) {
      expect(() => parseCommitRequest({ ...base, ...extra }), JSON.stringify(extra)).toThrow(ValidationError);
    }
  });
});
