import { describe, expect, it } from 'vitest';
import { EgressLimiter } from '../../src/server/egress.ts';
import { HttpError } from '../../src/server/http/errors.ts';
import { Router } from '../../src/server/http/router.ts';
import { createLogger } from '../../src/server/log.ts';
import { InProcessJournalNotifier } from '../../src/server/notifier.ts';

/** The server's small parts on their own: notifier, egress limiter, router, logger. */

describe('InProcessJournalNotifier', () => {
  it('wakes waiters of the namespace for a later sjid only', async () => {
    const n = new InProcessJournalNotifier();
    const waiting = n.wait('ns1', 5, 10_000);
    const other = n.wait('ns2', 0, 10_000);
    n.notify('ns1', 5); // not past the waiter's cursor
    n.notify('ns3', 9);
    expect(n.size).toBe(2);
    n.notify('ns1', 6);
    expect(await waiting).toBe(true);
    expect(n.size).toBe(1);
    n.notify('ns2', 1);
    expect(await other).toBe(true);
    expect(n.size).toBe(0);
  });

  it('resolves false on timeout and on abort, and forgets the waiter', async () => {
    const n = new InProcessJournalNotifier();
    const started = Date.now();
    expect(await n.wait('ns', 0, 50)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    const abort = new AbortController();
    const pending = n.wait('ns', 0, 10_000, abort.signal);
    expect(n.size).toBe(1);
    abort.abort();
    expect(await pending).toBe(false);
    expect(n.size).toBe(0);
    expect(await n.wait('ns', 0, 10_000, abort.signal)).toBe(false);
  });
});

describe('EgressLimiter', () => {
  it('paces reservations to the rate after the burst', async () => {
    const limiter = new EgressLimiter(1_000_000, 10_000);
    const started = performance.now();
    for (let i = 0; i < 30; i++) await limiter.take(10_000);
    const elapsed = performance.now() - started;
    // 300 kB at 1 MB/s, less the 10 kB burst.
    expect(elapsed).toBeGreaterThanOrEqual(270);
    expect(elapsed).toBeLessThan(1000);
  });

  it('shares one budget between concurrent takers', async () => {
    const limiter = new EgressLimiter(1_000_000, 10_000);
    const started = performance.now();
    await Promise.all([0, 1, 2].map(async () => {
      for (let i = 0; i < 10; i++) await limiter.take(10_000);
    }));
    expect(performance.now() - started).toBeGreaterThanOrEqual(270);
  });

  it('refuses a non-positive rate', () => {
    expect(() => new EgressLimiter(0)).toThrow(RangeError);
  });
});

describe('Router', () => {
  const router = new Router<string>()
    .add('GET', '/api/v1/ns/:ns', 'info')
    .add('GET', '/api/v1/ns/:ns/journal', 'journal')
    .add('POST', '/api/v1/blocks/missing', 'missing')
    .add('GET', '/api/v1/blocks/:hash', 'get')
    .add('PUT', '/api/v1/blocks/:hash', 'put');

  it('matches literal and parameter segments', () => {
    expect(router.match('GET', '/api/v1/ns/abc/journal')).toEqual({ pattern: '/api/v1/ns/:ns/journal', handler: 'journal', params: { ns: 'abc' } });
    expect(router.match('get', '/api/v1/ns/abc')?.handler).toBe('info');
    expect(router.match('POST', '/api/v1/blocks/missing')?.handler).toBe('missing');
    expect(router.match('GET', '/api/v1/blocks/missing')?.params).toEqual({ hash: 'missing' });
  });

  it('returns null for unknown paths and empty parameters', () => {
    expect(router.match('GET', '/api/v1/ns/')).toBeNull();
    expect(router.match('GET', '/api/v1/ns/abc/journal/x')).toBeNull();
    expect(router.match('GET', '/api/v2/ns/abc')).toBeNull();
  });

  it('throws 405 with every allowed method of the fitting patterns', () => {
    try {
      router.match('DELETE', '/api/v1/blocks/missing');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(HttpError);
      expect((err as HttpError).status).toBe(405);
      expect((err as HttpError).options.headers).toEqual({ Allow: 'POST, GET, PUT' });
    }
  });
});

describe('logger', () => {
  it('writes one JSON line per record at or above its level', () => {
    const lines: string[] = [];
    const log = createLogger('info', (line) => lines.push(line));
    log.debug('hidden');
    log.info('request', { method: 'GET', status: 200 });
    log.error('boom', { err: new Error('bad') });
    expect(lines).toHaveLength(2);
    expect(lines.every((l) => l.endsWith('\n'))).toBe(true);
    const first = JSON.parse(lines[0]);
    expect(first).toMatchObject({ level: 'info', msg: 'request', method: 'GET', status: 200 });
    expect(Date.parse(first.t)).not.toBeNaN();
    expect(JSON.parse(lines[1]).err.message).toBe('bad');
  });
});
