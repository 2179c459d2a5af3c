import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ViewPacer } from '../../workers/view-pacer.ts';

describe('view pacer', () => {
  let pushes: number[];
  let pacer: ViewPacer;
  beforeEach(() => {
    vi.useFakeTimers();
    pushes = [];
    pacer = new ViewPacer(() => pushes.push(Date.now()), () => Date.now());
  });
  afterEach(() => {
    pacer.stop();
    vi.useRealTimers();
  });

  it('pushes the first change after a quiet spell at once, then at most one per interval', () => {
    const start = Date.now();
    pacer.request(500);
    vi.advanceTimersByTime(0);
    expect(pushes).toEqual([start]);
    for (let t = 0; t < 1000; t += 50) {
      pacer.request(500);
      vi.advanceTimersByTime(50);
    }
    expect(pushes.map((at) => at - start)).toEqual([0, 500, 1000]);
  });

  it('brings a pending progress push forward for a change with a shorter interval', () => {
    const start = Date.now();
    pacer.request(500);
    vi.advanceTimersByTime(0);
    vi.advanceTimersByTime(50);
    pacer.request(500);
    vi.advanceTimersByTime(100);
    expect(pushes).toHaveLength(1);
    pacer.request(200);
    vi.advanceTimersByTime(49);
    expect(pushes).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(pushes.map((at) => at - start)).toEqual([0, 200]);
    // Nothing left pending: the progress request was answered by the same push.
    vi.advanceTimersByTime(1000);
    expect(pushes).toHaveLength(2);
  });

  it('does not delay a pending push for a request with a longer interval', () => {
    const start = Date.now();
    pacer.request(200);
    vi.advanceTimersByTime(10);
    pacer.request(200);
    pacer.request(500);
    vi.advanceTimersByTime(1000);
    expect(pushes.map((at) => at - start)).toEqual([0, 200]);
  });

  it('pushes nothing once stopped', () => {
    pacer.request(200);
    pacer.stop();
    pacer.request(200);
    vi.advanceTimersByTime(1000);
    expect(pushes).toEqual([]);
  });
});
