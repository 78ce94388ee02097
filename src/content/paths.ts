import { DepotsyncError } from '../errors.js';
import { printable } from './printable.js';

/**
 * Validation of untrusted relative paths (files inside a package) and of package names and versions.
 *
 * A manifest comes from the network or a bundle file, and its paths become file names on agents
 * (Linux, macOS, Windows). Every rule here blocks a way to write outside the package folder or to
 * make two entries land on one file:
 * - absolute paths (`/etc/passwd`), `..` segments, Windows drive letters (`C:x`) and alternate data
 *   streams (`a:b`), backslashes (a separator on Windows): path traversal.
 * - `.` and empty segments (`a//b`, `a/`): several spellings of one path, so one file could appear twice.
 * - NUL and control characters: truncation in C APIs, terminal and log injection.
 * - Segments ending in a dot or a space and the Windows characters `<>:"|?*`: Windows strips or refuses
 *   them, so `..␠` becomes `..` there, and `a.` becomes `a`.
 * - Windows device names (`CON`, `NUL`, `COM1`, … with any extension): writing there reaches a device.
 * - Length limits (segment 255 UTF-8 bytes, path 1024): beyond what file systems hold, and log flooding.
 * `checkPathList` adds the rules between paths: two paths equal ignoring case and Unicode
 * normalisation (they are one file on Windows and macOS, so one would overwrite the other after
 * verification), and a file that is also a folder of another path.
 */
export const MAX_PATH_BYTES = 1024;
export const MAX_SEGMENT_BYTES = 255;
export const MAX_NAME_CHARS = 128;

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const WINDOWS_RESERVED_CHARS = /[<>:"|?*]/;
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)(\..*)?$/i;

/** Why `path` is not an acceptable relative file path, or undefined when it is. */
export function pathProblem(path: unknown): string | undefined {
  if (typeof path !== 'string') return `expected a string, got ${printable(path)}`;
  if (path.length === 0) return 'empty path';
  if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) return `longer than ${MAX_PATH_BYTES} bytes`;
  if (path.includes('\u0000')) return 'NUL character not allowed';
  if (CONTROL.test(path)) return 'control character not allowed';
  if (path.includes('\\')) return 'backslash not allowed (use "/" between folders)';
  if (path.startsWith('/')) return 'absolute path not allowed';
  if (/^[A-Za-z]:/.test(path)) return 'drive letter not allowed';
  for (const seg of path.split('/')) {
    if (seg === '..') return '".." segment not allowed';
    if (seg === '.') return '"." segment not allowed';
    if (seg === '') return 'empty segment not allowed';
  }
  for (const seg of path.split('/')) {
    const problem = segmentProblem(seg);
    if (problem) return problem;
  }
  return undefined;
}

function segmentProblem(seg: string): string | undefined {
  if (Buffer.byteLength(seg, 'utf8') > MAX_SEGMENT_BYTES)
    return `segment longer than ${MAX_SEGMENT_BYTES} bytes`;
  if (WINDOWS_RESERVED_CHARS.test(seg))
    return `character ${printable(WINDOWS_RESERVED_CHARS.exec(seg)?.[0])} not allowed (reserved on Windows)`;
  if (/[. ]$/.test(seg))
    return `segment ${printable(seg)} ends with a dot or a space (Windows would drop it)`;
  if (WINDOWS_DEVICE.test(seg)) return `segment ${printable(seg)} is a Windows device name`;
  return undefined;
}

/** Throwing form, for one path: 'bad-path' naming `field` and the value. */
export function validateRelativePath(path: unknown, field = 'path'): string {
  const problem = pathProblem(path);
  if (problem) throw new DepotsyncError('bad-path', `${field} ${printable(path)}: ${problem}`);
  return path as string;
}

/** The key under which two paths are the same file on a case-insensitive, normalising file system. */
export function foldPath(path: string): string {
  return path.normalize('NFC').toUpperCase().toLowerCase();
}

/**
 * Problems between the paths of one list (each path is assumed valid on its own): duplicates ignoring
 * case and normalisation, and a file that is also a folder prefix of another path. Returns
 * `[index, message]` pairs, in list order.
 */
export function pathListProblems(paths: readonly string[]): Array<[number, string]> {
  const problems: Array<[number, string]> = [];
  const files = new Map<string, number>();
  const folded = paths.map(foldPath);
  folded.forEach((key, i) => {
    const first = files.get(key);
    if (first === undefined) files.set(key, i);
    else
      problems.push([
        i,
        `${printable(paths[i])} is the same file as ${printable(paths[first])} ignoring case`,
      ]);
  });
  folded.forEach((key, i) => {
    for (let cut = key.indexOf('/'); cut !== -1; cut = key.indexOf('/', cut + 1)) {
      const asFile = files.get(key.slice(0, cut));
      if (asFile !== undefined) {
        problems.push([
          i,
          `${printable(paths[asFile])} is a file, so it cannot also be a folder of ${printable(paths[i])}`,
        ]);
        break;
      }
    }
  });
  return problems.sort((a, b) => a[0] - b[0]);
}

/** Throwing form for a whole list: every path on its own, then the list rules; all problems in one error. */
export function checkPathList(paths: readonly unknown[], field = 'paths'): string[] {
  const problems: string[] = [];
  paths.forEach((p, i) => {
    const problem = pathProblem(p);
    if (problem) problems.push(`${field}[${i}] ${printable(p)}: ${problem}`);
  });
  if (problems.length === 0) {
    for (const [i, msg] of pathListProblems(paths as string[])) problems.push(`${field}[${i}]: ${msg}`);
  }
  if (problems.length > 0) throw new DepotsyncError('bad-path', problems.join('; '));
  return paths as string[];
}

/**
 * Why `value` is not an acceptable package name or version, or undefined. Names and versions become
 * folder names, URL parts and TUF target names, so they are held to `[A-Za-z0-9._+-]`, 1..128
 * characters, starting with a letter, digit or underscore (no leading dot: hidden files, `..`; no
 * leading dash: option injection in commands), no `..` anywhere, no trailing dot, no device name.
 */
export function nameProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `expected a string, got ${printable(value)}`;
  if (value.length === 0) return 'empty';
  if (value.length > MAX_NAME_CHARS) return `longer than ${MAX_NAME_CHARS} characters`;
  if (!/^[A-Za-z0-9._+-]+$/.test(value)) return 'only letters, digits and . _ + - are allowed';
  if (/^[.-]/.test(value)) return 'must not start with a dot or a dash';
  if (/^[+]/.test(value)) return 'must not start with "+"';
  if (value.includes('..')) return '".." not allowed';
  if (value.endsWith('.')) return 'must not end with a dot';
  if (WINDOWS_DEVICE.test(value)) return 'is a Windows device name';
  return undefined;
}

export function validatePackageName(name: unknown): string {
  const problem = nameProblem(name);
  if (problem) throw new DepotsyncError('bad-input', `package name ${printable(name)}: ${problem}`);
  return name as string;
}

export function validateVersion(version: unknown): string {
  const problem = nameProblem(version);
  if (problem) throw new DepotsyncError('bad-input', `package version ${printable(version)}: ${problem}`);
  return version as string;
}
