import { spawn, type SpawnOptions } from 'node:child_process';
import { statSync } from 'node:fs';
import { constants } from 'node:os';
import { win32 } from 'node:path';
import { DepotsyncError } from '../src/errors.js';

/** Exit codes of Windows Installer that mean "installed, restart needed" (ERROR_SUCCESS_REBOOT_*). */
export const REBOOT_CODES = new Set([3010, 1641]);

/** Quotes one argument of a Windows command line the way CommandLineToArgvW reads it back. */
export function quoteWindowsArg(a: string): string {
  if (a !== '' && !/[\s"]/.test(a)) return a;
  return `"${a.replace(/(\\*)"/g, '$1$1\\"').replace(/(\\+)$/, '$1$1')}"`;
}

export interface Launch {
  file: string;
  args: string[];
  /** Windows: the command line is `args` joined as written (already quoted), not re-quoted by Node. */
  verbatim: boolean;
  argv0?: string;
}

/**
 * How `--exec CMD` runs CMD with the verified path as its last argument. The path never becomes part of
 * the command text a shell parses: on POSIX it is the shell's positional parameter `$1`; on Windows it
 * is appended quoted (cmd.exe does not split inside quotes), with `%` and `"` refused in it because
 * cmd.exe would expand or end the quote there.
 */
export function execLaunch(cmd: string, path: string, platform = process.platform): Launch {
  if (cmd.trim() === '') throw new DepotsyncError('usage', '--exec: the command is empty');
  if (platform !== 'win32')
    return { file: '/bin/sh', args: ['-c', `${cmd} "$1"`, 'depotsync-exec', path], verbatim: false };
  if (/[%"]/.test(path))
    throw new DepotsyncError(
      'bad-path',
      `--exec: the path ${path} holds % or ", which cmd.exe would expand`,
      {
        hint: 'choose an --out without % and "',
      },
    );
  const comspec =
    process.env.ComSpec ?? win32.join(process.env.SystemRoot ?? 'C:\\Windows', 'System32', 'cmd.exe');
  // `/s /c "…"`: cmd.exe strips exactly the outer quotes and runs the rest as typed (as Node's shell option does).
  return { file: comspec, args: ['/d', '/s', '/c', `"${cmd} "${path}""`], verbatim: true };
}

/**
 * How `--install` runs a verified installer: an `.msi` through Windows Installer, unattended
 * (`msiexec /i PATH /qn /norestart`), an `.exe` itself; `args` (as typed, e.g. `/S` or `/quiet`) follow.
 */
export function installLaunch(path: string, args = ''): Launch {
  const ext = win32.extname(path).toLowerCase();
  const extra = args.trim() === '' ? [] : [args.trim()];
  if (ext === '.msi') {
    const msiexec = win32.join(process.env.SystemRoot ?? 'C:\\Windows', 'System32', 'msiexec.exe');
    return {
      file: msiexec,
      args: ['/i', quoteWindowsArg(path), '/qn', '/norestart', ...extra],
      verbatim: true,
      argv0: 'msiexec.exe',
    };
  }
  if (ext === '.exe') return { file: path, args: extra, verbatim: true, argv0: quoteWindowsArg(path) };
  throw new DepotsyncError('usage', `--install: ${path} is not an .exe or .msi file`, {
    hint: 'give --out a name ending in .exe or .msi, or use --exec CMD for anything else',
  });
}

/** `--install` checks before anything is fetched: Windows, and an installer's name at --out. */
export function checkInstallTarget(out: string, platform = process.platform): void {
  if (platform !== 'win32')
    throw new DepotsyncError('usage', '--install runs a Windows installer (.exe, .msi)', {
      hint: 'on Linux, use --exec CMD',
    });
  installLaunch(out);
}

/**
 * `agent fetch --exec CMD` / `--install`: run the launch only ever after the fetch verified and moved
 * the package into place (the caller guarantees the order; nothing here runs on a failed fetch). The
 * exit code passes through; a signal becomes 128 + its number, as shells report it.
 */
export async function runAfterVerify(
  launch: Launch,
  path: string,
  opts: { stdoutToStderr?: boolean; env?: NodeJS.ProcessEnv; installer?: boolean } = {},
): Promise<number> {
  if (opts.installer && !statSync(path).isFile())
    throw new DepotsyncError('bad-input', `--install: ${path} is a folder package, not an installer file`, {
      hint: 'use --exec CMD to run something inside it',
    });
  const what = [launch.file, ...launch.args].join(' ');
  const options: SpawnOptions = {
    stdio: ['inherit', opts.stdoutToStderr ? process.stderr : 'inherit', 'inherit'],
    env: { ...process.env, ...opts.env, DEPOTSYNC_PATH: path },
    windowsVerbatimArguments: launch.verbatim,
    windowsHide: true,
    ...(launch.argv0 ? { argv0: launch.argv0 } : {}),
  };
  return new Promise<number>((resolve, reject) => {
    const child = spawn(launch.file, launch.args, options);
    child.on('error', (e) =>
      reject(new DepotsyncError('io', `${what}: could not start (${e.message})`, { cause: e })),
    );
    child.on('exit', (code, signal) => {
      if (code !== null) resolve(code);
      else resolve(128 + ((signal && constants.signals[signal]) || 1));
    });
  });
}
