import { describe, expect, it } from 'vitest';
import { changedSettings, logLevelOption, reloadReport } from '../../../src/config/reload.js';

describe('configuration reload reports', () => {
  it('lists changed leaves and splits them into live and restart', () => {
    const before = { logLevel: '', listen: 'a:1', schedule: { intervalMs: 1, window: '' }, hosts: ['a'] };
    const after = {
      logLevel: 'debug',
      listen: 'a:2',
      schedule: { intervalMs: 2, window: '' },
      hosts: ['a', 'b'],
    };
    expect(changedSettings(before, after)).toEqual(['hosts', 'listen', 'logLevel', 'schedule.intervalMs']);
    expect(reloadReport(before, after, ['logLevel', 'schedule.'])).toEqual({
      applied: ['logLevel', 'schedule.intervalMs'],
      needsRestart: ['hosts', 'listen'],
    });
    expect(reloadReport(before, before, ['logLevel'])).toEqual({ applied: [], needsRestart: [] });
  });

  it('logLevel: pino levels or empty', () => {
    expect(logLevelOption('x', 'debug')).toBe('debug');
    expect(logLevelOption('x', '')).toBe('');
    expect(() => logLevelOption('depot.json', 'verbose')).toThrow(
      /depot.json: logLevel must be '' or one of fatal/,
    );
  });
});
