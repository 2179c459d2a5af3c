import { afterEach, describe, expect, it, vi } from 'vitest';
import { FreshEntryHold, nearbyCursor } from '../../src/lan/fresh-entry-hold.ts';
import type { BlockHash, NamespaceId } from '../../src/protocol/index.ts';

const NS = 'gLYh2GuQa-XXMRoUUKJCRg' as NamespaceId;
const want = (hash: string, sjid: number) => ({ ns: NS, hash: hash.repeat(64) as BlockHash, sjid, sizeHint: 1 });

describe('FreshEntryHold', () => {
  afterEach(() => vi.useRealTimers());

  function setup(nearby: number | null) {
    vi.useFakeTimers();
    let now = 1_000;
    let wakes = 0;
    let cursor = nearby;
    const hold = new FreshEntryHold({ holdMs: 3_000, nearbyCursor: () => cursor, wake: () => wakes++, now: () => now });
    return {
      hold,
      advance: (ms: number) => {
        now += ms;
        vi.advanceTimersByTime(ms);
      },
      wakes: () => wakes,
      setNearby: (value: number | null) => (cursor = value),
    };
  }

  it('holds a block of an entry newer than every LAN advert, with no capacity, then lets it go and wakes the scheduler', () => {
    const { hold, advance, wakes } = setup(4);
    expect(hold.maxInFlight).toBe(0);
    expect(hold.canServe(want('a', 5))).toBe(true);
    advance(2_000);
    expect(hold.canServe(want('a', 5))).toBe(true);
    expect(wakes()).toBe(0);
    advance(1_100);
    expect(wakes()).toBe(1);
    expect(hold.canServe(want('a', 5))).toBe(false);
    hold.close();
  });

  it('holds nothing a LAN peer already claims by advert, and nothing with no LAN peer heard', () => {
    const claimed = setup(5);
    expect(claimed.hold.canServe(want('a', 5))).toBe(false);
    claimed.hold.close();
    const alone = setup(null);
    expect(alone.hold.canServe(want('a', 1))).toBe(false);
    alone.hold.close();
  });

  it('times each block from when it was first asked about, and wakes again for later holds', () => {
    const { hold, advance, wakes } = setup(0);
    expect(hold.canServe(want('a', 1))).toBe(true);
    advance(1_500);
    expect(hold.canServe(want('b', 2))).toBe(true);
    advance(1_600); // a's hold is over, b's is not
    expect(wakes()).toBe(1);
    expect(hold.canServe(want('a', 1))).toBe(false);
    expect(hold.canServe(want('b', 2))).toBe(true);
    advance(1_500);
    expect(wakes()).toBe(2);
    expect(hold.canServe(want('b', 2))).toBe(false);
    hold.close();
  });

  it('never serves a block itself', async () => {
    const { hold } = setup(0);
    await expect(hold.fetchBlock()).rejects.toThrow(/waiting/);
    hold.close();
  });
});

describe('nearbyCursor', () => {
  const heard = (sourceCursor: number | null = null) => ({ heard: true, sourceCursor });

  it('is null with no LAN peer heard: nothing is held', () => {
    expect(nearbyCursor([])).toBeNull();
    expect(nearbyCursor([{ heard: false, sourceCursor: null }])).toBeNull();
  });

  it('counts only peers we fetch from now: an advert whose sender we have no link with yet releases nothing', () => {
    // The office flake: the browser's bridge advertised the new entry before this daemon had
    // dialled it; counting that advert let the server serve the entry's blocks at once.
    expect(nearbyCursor([heard(), heard()])).toBe(0);
    expect(nearbyCursor([heard(1), heard()])).toBe(1);
  });

  it('is the highest cursor of the peers we fetch from', () => {
    expect(nearbyCursor([heard(3), heard(7), heard()])).toBe(7);
    expect(nearbyCursor([{ heard: false, sourceCursor: 2 }])).toBe(2);
  });
});
