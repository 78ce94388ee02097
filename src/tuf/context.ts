import { DepotsyncError, type ErrorCode } from '../errors.js';

/** Which metadata an error is about: the role and the file it came from (e.g. `bin-3a`, `7.bin-3a.json`). */
export interface MetaContext {
  readonly role: string;
  readonly file: string;
}

/** Every TUF error names the role, the file and the reason. */
export function metaError(
  code: ErrorCode,
  ctx: MetaContext,
  reason: string,
  opts: { hint?: string; cause?: unknown } = {},
): DepotsyncError {
  return new DepotsyncError(code, `${ctx.role} metadata ${ctx.file}: ${reason}`, opts);
}

/** Role names become file names (`{N}.{role}.json`) on mirrors and in stores: keep them plain. */
export const ROLE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function isTopLevelRole(role: string): role is 'root' | 'timestamp' | 'snapshot' | 'targets' {
  return role === 'root' || role === 'timestamp' || role === 'snapshot' || role === 'targets';
}

/** Consistent-snapshot file name of a role's metadata (timestamp is never version-prefixed). */
export function metadataFileName(role: string, version: number): string {
  return role === 'timestamp' ? 'timestamp.json' : `${version}.${role}.json`;
}

/** TUF dates: ISO 8601 in UTC to the second, e.g. 2030-01-01T00:00:00Z. */
export function tufDate(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * A role name as it appears in a URL or a file name: percent-encoded like Python's
 * `urllib.parse.quote(name, '')` (only letters, digits and `_.-~` stay), so `?`, `#` and `/` cannot
 * change what is requested or where it is stored.
 */
export function quoteRoleName(role: string): string {
  return encodeURIComponent(role).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/**
 * The file name to request a role's metadata under: root is always `{N}.root.json`, timestamp always
 * `timestamp.json`; the others are version-prefixed only when the root sets `consistent_snapshot`.
 */
export function roleFileName(role: string, version: number, consistentSnapshot: boolean): string {
  if (role === 'timestamp') return 'timestamp.json';
  const quoted = quoteRoleName(role);
  return role === 'root' || consistentSnapshot ? `${version}.${quoted}.json` : `${quoted}.json`;
}
