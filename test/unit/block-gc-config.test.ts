import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BLOCK_GC, envBlockGc } from '../../src/server/config.ts';

/** HISTORY_DAYS, BLOCK_GC_GRACE_S, BLOCK_GC_INTERVAL_S: defaults, accepted values, clear refusals. */

describe('envBlockGc', () => {
  it('defaults to 30 days, 1 h grace, a pass every hour', () => {
    expect(envBlockGc({})).toEqual({ historyMs: 30 * 86_400_000, graceMs: 3_600_000, intervalMs: 3_600_000 });
    expect(envBlockGc({ HISTORY_DAYS: '', BLOCK_GC_GRACE_S: ' ' })).toEqual(DEFAULT_BLOCK_GC);
  });

  it('takes whole seconds, days with a fraction, and 0 (no history; no grace; no timed pass)', () => {
    expect(envBlockGc({ HISTORY_DAYS: '0', BLOCK_GC_GRACE_S: '0', BLOCK_GC_INTERVAL_S: '0' })).toEqual({ historyMs: 0, graceMs: 0, intervalMs: 0 });
    expect(envBlockGc({ HISTORY_DAYS: '7', BLOCK_GC_GRACE_S: '600', BLOCK_GC_INTERVAL_S: '86400' })).toEqual({
      historyMs: 7 * 86_400_000,
      graceMs: 600_000,
      intervalMs: 86_400_000,
    });
    expect(envBlockGc({ HISTORY_DAYS: '0.5' }).historyMs).toBe(43_200_000);
  });

  it('refuses anything else, naming the variable and the value', () => {
    for (const [name, value] of [
      ['HISTORY_DAYS', '-1'],
      ['HISTORY_DAYS', '30d'],
      ['HISTORY_DAYS', '1e3'],
      ['HISTORY_DAYS', '40000'],
      ['BLOCK_GC_GRACE_S', '1.5'],
      ['BLOCK_GC_GRACE_S', 'soon'],
      ['BLOCK_GC_INTERVAL_S', '-60'],
      ['BLOCK_GC_INTERVAL_S', '99999999999'],
    ]) {
      expect(() => envBlockGc({ [name]: value }), `${name}=${value}`).toThrow(new RegExp(`^${name} must be .* not "${value.replace('.', '\\.')}"$`));
    }
  });

  it('stops the server at start with that message', () => {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/server/main.ts'], {
      cwd: root,
      env: { ...process.env, HISTORY_DAYS: 'forever', PORT: '0', DATA_DIR: '/nonexistent/never-created' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('nearsync: HISTORY_DAYS must be a number from 0 to 36500, not "forever"');
  });
});
