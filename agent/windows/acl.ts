import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { win32 } from 'node:path';
import { DepotsyncError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';

/**
 * Who may read the agent's key and state (docs/windows-agent.md): on Windows, SYSTEM and the
 * Administrators group only, set and read with `icacls`; elsewhere, the owner only (no group or other
 * permission bits). The agent refuses to start when a file is looser.
 */

/** Well-known SIDs, written as `icacls` accepts them (`*SID`): locale-independent, unlike the names. */
export const SYSTEM_SID = 'S-1-5-18';
export const ADMINISTRATORS_SID = 'S-1-5-32-544';
/** The names `icacls` prints for them on an English system, and the SIDs it prints when it has no name. */
const ALLOWED = new Set(
  ['NT AUTHORITY\\SYSTEM', 'BUILTIN\\Administrators', SYSTEM_SID, ADMINISTRATORS_SID].map((s) =>
    s.toLowerCase(),
  ),
);

export interface AclEntry {
  principal: string;
  rights: string;
}

/**
 * The entries of `icacls FILE` output: the first line is `FILE PRINCIPAL:(RIGHTS)`, the next ones
 * are indented `PRINCIPAL:(RIGHTS)`, and a summary line ends it.
 */
export function parseIcacls(output: string, file: string): AclEntry[] {
  const entries: AclEntry[] = [];
  for (const raw of output.split(/\r?\n/)) {
    let line = raw;
    if (line.toLowerCase().startsWith(file.toLowerCase())) line = line.slice(file.length);
    const m = /^\s+(.+?):((?:\([^)]*\))+)\s*$/.exec(line);
    if (m) entries.push({ principal: (m[1] as string).trim(), rights: m[2] as string });
  }
  return entries;
}

/** Entries that grant anything to someone other than SYSTEM or Administrators (deny entries are fine). */
export function looseEntries(entries: AclEntry[]): AclEntry[] {
  return entries.filter((e) => {
    if (/\(DENY\)/i.test(e.rights)) return false;
    const p = e.principal.replace(/^\*/, '').toLowerCase();
    return !ALLOWED.has(p);
  });
}

/** `icacls` of this Windows, by full path: a program of the same name earlier in PATH is not run. */
function icaclsExe(): string {
  return win32.join(process.env.SystemRoot ?? process.env.windir ?? 'C:\\Windows', 'System32', 'icacls.exe');
}

function icacls(args: string[]): string {
  return execFileSync(icaclsExe(), args, {
    encoding: 'utf8',
    windowsHide: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/**
 * Restrict the agent directory: inheritance from the parent removed, full control for SYSTEM and
 * Administrators, inherited by everything below (`(OI)(CI)`). On POSIX the files are created with
 * 0600/0700 already (enroll.ts), so nothing is done there.
 */
export function restrictAgentDir(dir: string): void {
  if (process.platform !== 'win32') return;
  try {
    icacls([
      dir,
      '/inheritance:r',
      '/grant:r',
      `*${SYSTEM_SID}:(OI)(CI)F`,
      `*${ADMINISTRATORS_SID}:(OI)(CI)F`,
      '/T',
      '/C',
      '/Q',
    ]);
  } catch (e) {
    throw new DepotsyncError('io', `could not restrict the permissions of ${dir} with icacls`, {
      hint: 'run the agent as an administrator or as SYSTEM (the service does)',
      cause: e,
    });
  }
}

export type AclVerdict =
  | { state: 'private' }
  | { state: 'loose'; who: string[] }
  /** `icacls` printed no entries: only seen under wine, whose icacls is a stub (docs/windows-agent.md). */
  | { state: 'unverified' };

/** POSIX: group or other permission bits on a secret file. */
export function posixVerdict(mode: number): AclVerdict {
  const loose = mode & 0o077;
  if (loose === 0) return { state: 'private' };
  const who = [...(loose & 0o070 ? ['group'] : []), ...(loose & 0o007 ? ['others'] : [])];
  return { state: 'loose', who };
}

export function windowsVerdict(icaclsOutput: string, file: string): AclVerdict {
  const entries = parseIcacls(icaclsOutput, file);
  if (entries.length === 0) return { state: 'unverified' };
  const loose = looseEntries(entries);
  return loose.length === 0
    ? { state: 'private' }
    : { state: 'loose', who: loose.map((e) => `${e.principal}:${e.rights}`) };
}

/**
 * Refuse to go on when a secret file (the machine key; on Windows the state too) can be read by more
 * than its owner (POSIX) or SYSTEM and Administrators (Windows). Missing files are skipped: the
 * commands that need them say so themselves.
 */
export function checkPrivateFiles(files: string[], log?: Logger): void {
  for (const file of files) {
    if (!existsSync(file)) continue;
    let verdict: AclVerdict;
    if (process.platform === 'win32') {
      let out: string;
      try {
        out = icacls([file]);
      } catch (e) {
        throw new DepotsyncError('io', `could not read the permissions of ${file} with icacls`, { cause: e });
      }
      verdict = windowsVerdict(out, file);
    } else {
      verdict = posixVerdict(statSync(file).mode);
    }
    if (verdict.state === 'unverified') {
      log?.warn({ file }, 'icacls listed no access entries (not a real Windows?): permissions not verified');
      continue;
    }
    if (verdict.state === 'loose') {
      const fix =
        process.platform === 'win32'
          ? `icacls "${file}" /inheritance:r /grant:r *${SYSTEM_SID}:F *${ADMINISTRATORS_SID}:F`
          : `chmod 600 '${file}'`;
      throw new DepotsyncError(
        'forbidden',
        `${file} can be read by ${verdict.who.join(', ')}: refusing to use it`,
        {
          hint: `make it private, then run again: ${fix}`,
        },
      );
    }
  }
}
