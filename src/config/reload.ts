import { DepotsyncError } from '../errors.js';

/** pino's levels, as `logLevel` in depot.json and master.json accepts them. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** A `logLevel` setting: '' (the command's default) or one of LOG_LEVELS. */
export function logLevelOption(where: string, value: unknown): string {
  if (value === '' || (typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value)))
    return value;
  throw new DepotsyncError(
    'bad-input',
    `${where}: logLevel must be '' or one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value)}`,
  );
}

/**
 * The level a service logs at: `--log-level` and DEPOTSYNC_LOG_LEVEL win (they are the operator's word
 * for this run), then the configuration's `logLevel`, then the command's default.
 */
export function serviceLogLevel(
  flag: string | undefined,
  configured: string,
  commandDefault: string,
): { level: string; fromConfig: boolean } {
  const explicit = flag || process.env.DEPOTSYNC_LOG_LEVEL;
  if (explicit) return { level: explicit, fromConfig: false };
  return { level: configured || commandDefault, fromConfig: true };
}

/** What a reload changed: settings applied live, and settings that take a restart. */
export interface ReloadReport {
  applied: string[];
  needsRestart: string[];
}

/** Dotted paths of the leaves that differ between two configuration objects (arrays compare whole). */
export function changedSettings(before: unknown, after: unknown, prefix = ''): string[] {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => changedSettings(before[k], after[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [prefix];
}

/**
 * Split the changed settings into those a running service applies (`live`: exact paths or section
 * prefixes ending in '.') and those that need a restart.
 */
export function reloadReport(before: unknown, after: unknown, live: readonly string[]): ReloadReport {
  const report: ReloadReport = { applied: [], needsRestart: [] };
  for (const path of changedSettings(before, after)) {
    const isLive = live.some((l) => (l.endsWith('.') ? path.startsWith(l) : path === l));
    (isLive ? report.applied : report.needsRestart).push(path);
  }
  return report;
}
