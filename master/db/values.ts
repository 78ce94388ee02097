import { DepotsyncError } from '../../src/errors.js';

/** Checks for values entering the database from callers; each error names the field. */

const HEX64 = /^[0-9a-f]{64}$/;

export function hex64(value: unknown, field: string): string {
  if (typeof value !== 'string' || !HEX64.test(value)) {
    throw new DepotsyncError(
      'bad-input',
      `${field} must be 64 lowercase hex characters, got ${preview(value)}`,
    );
  }
  return value;
}

export function text(value: unknown, field: string, maxLength = 256): string {
  // Control characters would corrupt logs, the audit trail and the dashboard.
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > maxLength ||
    /[\u0000-\u001f\u007f]/.test(value)
  ) {
    throw new DepotsyncError(
      'bad-input',
      `${field} must be 1-${maxLength} printable characters, got ${preview(value)}`,
    );
  }
  return value;
}

export function count(value: unknown, field: string, min = 0): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new DepotsyncError('bad-input', `${field} must be an integer >= ${min}, got ${preview(value)}`);
  }
  return value;
}

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new DepotsyncError(
      'bad-input',
      `${field} must be one of ${allowed.join(', ')}, got ${preview(value)}`,
    );
  }
  return value as T;
}

export function preview(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Optional values are stored as NULL and read back as undefined. */
export function orNull<T>(v: T | undefined): T | null {
  return v === undefined ? null : v;
}

export function orUndefined<T>(v: T | null): T | undefined {
  return v === null ? undefined : v;
}

/** A PEM block: printable ASCII and line breaks only, bounded. Parsing it is the PKI layer's job. */
export function pem(value: unknown, field: string, maxLength = 16 * 1024): string {
  if (
    typeof value !== 'string' ||
    value.length > maxLength ||
    !/^-----BEGIN [A-Z0-9 ]+-----\r?\n[\x20-\x7e\r\n]+-----END [A-Z0-9 ]+-----\s*$/.test(value)
  ) {
    throw new DepotsyncError(
      'bad-input',
      `${field} must be a PEM block of at most ${maxLength} characters, got ${preview(value)}`,
    );
  }
  return value;
}

/** Machine (and site) names: they appear in certificates, URLs, logs and file names. */
export const MACHINE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function machineName(value: unknown, field = 'machine name'): string {
  if (typeof value !== 'string' || !MACHINE_NAME.test(value)) {
    throw new DepotsyncError(
      'bad-input',
      `${field} must be 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit, got ${preview(value)}`,
    );
  }
  return value;
}

export function optional<T>(value: T | undefined, check: (v: T) => T): T | null {
  return value === undefined ? null : check(value);
}
