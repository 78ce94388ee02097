import { DepotsyncError } from '../errors.js';

export const MAX_TARGET_PATH_CHARS = 1024;

/**
 * Target paths are relative, `/`-separated names (`pkg/1.2.0/manifest.json`). Refused (path traversal
 * on mirrors and clients that store targets by name): absolute paths, `..` and `.` segments, empty
 * segments, backslashes, drive letters, control characters.
 */
export function targetPathProblem(path: unknown): string | undefined {
  if (typeof path !== 'string' || path.length === 0) return 'must be a non-empty string';
  if (path.length > MAX_TARGET_PATH_CHARS) return `is longer than ${MAX_TARGET_PATH_CHARS} characters`;
  if (path.startsWith('/')) return 'must be relative, not absolute';
  if (path.includes('\\')) return 'must use "/" separators, not "\\"';
  if (/^[A-Za-z]:/.test(path)) return 'must not start with a drive letter';
  if (/[\u0000-\u001f\u007f]/.test(path)) return 'must not contain control characters';
  for (const seg of path.split('/')) {
    if (seg === '') return 'must not contain empty segments ("//" or a trailing "/")';
    if (seg === '.' || seg === '..') return `must not contain a "${seg}" segment`;
  }
  return undefined;
}

export function checkTargetPath(path: unknown, what = 'target path'): string {
  const problem = targetPathProblem(path);
  if (problem) {
    throw new DepotsyncError('bad-path', `${what} ${JSON.stringify(path)} ${problem}`, {
      hint: 'use a relative path such as "name/version/manifest.json"',
    });
  }
  return path as string;
}
