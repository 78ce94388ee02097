import { DepotsyncError } from '../errors.js';

/**
 * Option checks that name the option, the expected and the received value (docs/contributing.md).
 */
export function intOption(where: string, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new DepotsyncError(
      'bad-input',
      `${where}: ${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

export function stringOption(where: string, name: string, value: unknown, pattern?: RegExp): string {
  if (typeof value !== 'string' || value.length === 0 || (pattern && !pattern.test(value))) {
    throw new DepotsyncError(
      'bad-input',
      `${where}: ${name} must be a string${pattern ? ` matching ${pattern}` : ''}, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/** Merge a partial, untrusted object over typed defaults, keeping only known keys of the same type. */
export function mergeDefaults<T extends object>(where: string, defaults: T, given: unknown): T {
  if (given === undefined) return { ...defaults };
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw new DepotsyncError('bad-input', `${where}: expected an object, got ${JSON.stringify(given)}`);
  }
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [k, v] of Object.entries(given)) {
    if (!(k in defaults))
      throw new DepotsyncError('bad-input', `${where}: unknown setting ${JSON.stringify(k)}`);
    const d = (defaults as Record<string, unknown>)[k];
    if (d !== null && d !== undefined && typeof d !== typeof v) {
      throw new DepotsyncError('bad-input', `${where}: ${k} must be a ${typeof d}, got ${JSON.stringify(v)}`);
    }
    out[k] = v;
  }
  return out as T;
}

/** Parse "30d", "12h", "15m", "45s", "500ms" into milliseconds. */
export function parseDuration(where: string, text: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!m)
    throw new DepotsyncError(
      'bad-input',
      `${where}: expected a duration like 30d, 12h, 15m or 45s, got ${JSON.stringify(text)}`,
    );
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
    m[2] as 'ms' | 's' | 'm' | 'h' | 'd'
  ];
  return n * unit;
}
