import { describe, expect, it } from 'vitest';
import { fetchLanKeyWithRetry } from '../../src/lan/lan-key-retry.ts';

describe('fetchLanKeyWithRetry', () => {
  it('asks again after each failure, waiting longer each time, until the key comes', async () => {
    const key = new Uint8Array(32).fill(7);
    let calls = 0;
    const failures: { attempt: number; message: string; delayMs: number }[] = [];
    const got = await fetchLanKeyWithRetry({
      fetchKey: async () => {
        calls += 1;
        if (calls < 4) throw new Error(`HTTP 503 (${calls})`);
        return key;
      },
      signal: new AbortController().signal,
      firstDelayMs: 10,
      maxDelayMs: 35,
      onFailure: (attempt, error, delayMs) => failures.push({ attempt, message: error.message, delayMs }),
    });
    expect(got).toBe(key);
    expect(failures.map((f) => [f.attempt, f.message])).toEqual([
      [1, 'HTTP 503 (1)'],
      [2, 'HTTP 503 (2)'],
      [3, 'HTTP 503 (3)'],
    ]);
    // 10, 20, then capped at 35 — each spread by ±25 %.
    const bounds = [10, 20, 35];
    failures.forEach((failure, i) => {
      expect(failure.delayMs).toBeGreaterThanOrEqual(Math.floor(bounds[i] * 0.75));
      expect(failure.delayMs).toBeLessThanOrEqual(Math.ceil(bounds[i] * 1.25));
    });
  });

  it('stops when the daemon stops, between attempts', async () => {
    const controller = new AbortController();
    let calls = 0;
    const stopped = fetchLanKeyWithRetry({
      fetchKey: async () => {
        calls += 1;
        throw new Error('server down');
      },
      signal: controller.signal,
      firstDelayMs: 60_000,
      onFailure: () => controller.abort(new Error('stopping')),
    });
    await expect(stopped).rejects.toThrow('stopping');
    expect(calls).toBe(1);
  });
});
