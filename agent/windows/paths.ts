import { posix, win32 } from 'node:path';
import { DepotsyncError } from '../../src/errors.js';

/**
 * Where a self-contained agent keeps its directory when `--dir` is not given: under `%ProgramData%`
 * on Windows (machine-wide, writable only by administrators and SYSTEM by default), `/var/lib` elsewhere.
 */
export function defaultAgentDir(
  platform: NodeJS.Platform = process.platform,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (platform === 'win32') {
    const base = env.ProgramData ?? env.PROGRAMDATA ?? env.ALLUSERSPROFILE ?? 'C:\\ProgramData';
    return win32.join(base, 'depotsync', 'agent');
  }
  return posix.join('/var/lib', 'depotsync', 'agent');
}

/** Device names Windows reserves in every folder, with or without an extension (`NUL.txt` is `NUL`). */
const RESERVED = /^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i;

/**
 * The longest full path the agent writes on Windows. The agent does not rely on the `\\?\` prefix or
 * the LongPathsEnabled policy: programs that later open the file (installers, --exec) may lack both.
 */
export const WINDOWS_MAX_PATH = 259;

/**
 * An output path (`agent fetch --out`) that Windows cannot hold as asked: a reserved device name in any
 * component, a component ending in a dot or space (Windows strips them, so another file is written),
 * characters Windows refuses, a drive-relative path (`C:foo`, resolved against that drive's
 * current folder), or a path longer than `WINDOWS_MAX_PATH`. Checked on every platform with Windows
 * rules when `platform` is win32, so the rules are tested on Linux too; on other platforms the
 * name and path lengths Linux allows (255 bytes a name, 4095 a path) are checked.
 */
export function checkOutputPath(
  out: string,
  platform: NodeJS.Platform = process.platform,
  cwd: string = process.cwd(),
): string {
  const bad = (why: string, hint: string) =>
    new DepotsyncError('bad-path', `output path ${JSON.stringify(out)} ${why}`, { hint });
  if (platform !== 'win32') {
    const full = posix.resolve(cwd, out);
    const long = full.split('/').find((p) => Buffer.byteLength(p) > 255);
    if (long !== undefined)
      throw bad(
        `has a name of ${Buffer.byteLength(long)} bytes; file systems hold 255`,
        'choose a shorter name',
      );
    if (Buffer.byteLength(full) > 4095)
      throw bad(`is ${Buffer.byteLength(full)} bytes long; the limit is 4095`, 'choose a shorter folder');
    return out;
  }
  if (/^[a-z]:(?![\\/])/i.test(out))
    throw bad(
      'is relative to the current folder of a drive',
      'give a full path with a backslash after the drive letter, e.g. C:\\Packages\\tool',
    );
  const full = win32.resolve(cwd, out);
  if (/^\\\\[?.]\\/.test(out))
    throw bad('uses a device or \\\\?\\ prefix', 'give an ordinary path such as C:\\Packages\\tool');
  const root = win32.parse(full).root;
  for (const part of full.slice(root.length).split('\\')) {
    if (part === '') continue;
    if (RESERVED.test(part.trim()))
      throw bad(
        `contains ${JSON.stringify(part)}, a name Windows reserves for a device`,
        'choose another name (CON, PRN, AUX, NUL, COM1-9, LPT1-9 are refused in every folder)',
      );
    if (/[<>:"|?*\u0000-\u001f]/.test(part))
      throw bad(`contains ${JSON.stringify(part)} with a character Windows refuses`, 'rename it');
    if (/[. ]$/.test(part))
      throw bad(
        `contains ${JSON.stringify(part)}, which ends in a dot or space (Windows drops them)`,
        'remove the trailing dot or space',
      );
  }
  if (full.length > WINDOWS_MAX_PATH)
    throw bad(
      `is ${full.length} characters long; Windows programs are limited to ${WINDOWS_MAX_PATH}`,
      'choose a shorter folder, e.g. C:\\Packages',
    );
  return full;
}

/**
 * The paths a fetch writes (the staged files, longer than their final places) against the Windows limit:
 * a package whose deepest file would not fit under `--out` is refused before anything is downloaded.
 */
export function checkWindowsPathLengths(out: string, written: readonly string[]): void {
  const longest = written.reduce((a, b) => (b.length > a.length ? b : a), '');
  if (longest.length <= WINDOWS_MAX_PATH) return;
  throw new DepotsyncError(
    'bad-path',
    `output path ${JSON.stringify(out)} is too deep for this package: a file would be written at a path of ${longest.length} characters (${longest}); Windows programs are limited to ${WINDOWS_MAX_PATH}`,
    { hint: 'choose a shorter folder for --out, e.g. C:\\Packages' },
  );
}
