import { describe, expect, it } from 'vitest';
import { parseRedisLocation } from '../../src/server/backends/redis-connection.ts';

describe('REDIS_URL', () => {
  it('keys the relay state under "nearsync:" unless ?prefix= says otherwise', () => {
    expect(parseRedisLocation('redis://127.0.0.1:6379')).toEqual({ url: 'redis://127.0.0.1:6379', prefix: 'nearsync:', display: 'redis://127.0.0.1:6379' });
    expect(parseRedisLocation('redis://127.0.0.1:6379/2?prefix=team-a:')).toEqual({
      url: 'redis://127.0.0.1:6379/2',
      prefix: 'team-a:',
      display: 'redis://127.0.0.1:6379/2',
    });
  });

  it('never shows the password', () => {
    const location = parseRedisLocation('rediss://user:s3cret@redis.example.com:6380?prefix=x:');
    expect(location.url).toBe('rediss://user:s3cret@redis.example.com:6380');
    expect(location.display).toBe('rediss://user:***@redis.example.com:6380');
    expect(() => parseRedisLocation('http://user:s3cret@example.com')).toThrow(/^REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/);
    expect(() => parseRedisLocation('http://user:s3cret@example.com')).not.toThrow(/s3cret/);
  });

  it.each(['', 'a*', 'a?b', 'has space', '[x]', 'x'.repeat(65)])('refuses the prefix %j', (prefix) => {
    expect(() => parseRedisLocation(`redis://127.0.0.1?prefix=${encodeURIComponent(prefix)}`)).toThrow(/^REDIS_URL: prefix must be/);
  });
});
