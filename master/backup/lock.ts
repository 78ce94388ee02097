import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';

/**
 * `M/master.lock`: held by `master serve` for as long as it serves, and by `master restore` while it
 * replaces the database, so a restore never swaps the database under a serving master (and two masters
 * never serve one directory). The file names its holder; a holder that died (no such process on this
 * host) leaves a stale file, which the next taker replaces.
 */
export interface LockHolder {
  pid: number;
  host: string;
  purpose: string;
  since: string;
}

export interface MasterLock {
  readonly path: string;
  release(): void;
}

export function lockPath(dir: string): string {
  return join(dir, 'master.lock');
}

/** Take the lock for `purpose` ('serve', 'restore'), or fail naming the live holder. */
export function acquireMasterLock(dir: string, purpose: string): MasterLock {
  const path = lockPath(dir);
  const me: LockHolder = { pid: process.pid, host: hostname(), purpose, since: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(e, `master lock ${path}`);
      const holder = readHolder(path);
      if (holder && isAlive(holder)) {
        throw new DepotsyncError(
          'conflict',
          `master directory ${dir} is in use: ${holder.purpose} by process ${holder.pid} on ${holder.host} since ${holder.since}`,
          {
            hint:
              holder.purpose === 'serve'
                ? 'stop `depotsync master serve` first (Ctrl-C or SIGTERM), then try again'
                : 'wait for it to finish, then try again',
          },
        );
      }
      try {
        unlinkSync(path); // stale: its holder is gone
      } catch {
        // someone else removed it first
      }
      continue;
    }
    try {
      writeSync(fd, `${JSON.stringify(me)}\n`);
    } finally {
      closeSync(fd);
    }
    let released = false;
    return {
      path,
      release() {
        if (released) return;
        released = true;
        const h = readHolder(path);
        if (h && h.pid === me.pid && h.since === me.since) {
          try {
            unlinkSync(path);
          } catch {
            // already gone
          }
        }
      },
    };
  }
  throw new DepotsyncError(
    'conflict',
    `master lock ${path}: could not be taken (another process took it at the same moment)`,
    { hint: 'try again' },
  );
}

/** The current holder, or undefined when there is none (or the file is unreadable: treated as stale). */
export function readHolder(path: string): LockHolder | undefined {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockHolder>;
    if (typeof v.pid !== 'number' || typeof v.host !== 'string') return undefined;
    return {
      pid: v.pid,
      host: v.host,
      purpose: String(v.purpose ?? 'unknown'),
      since: String(v.since ?? '?'),
    };
  } catch {
    return undefined;
  }
}

function isAlive(h: LockHolder): boolean {
  // On another host we cannot tell: assume it is alive (the operator removes the file if it is not).
  if (h.host !== hostname()) return true;
  try {
    process.kill(h.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The live holder of `dir`'s lock, if any (a stale lock file counts as none). Changes nothing. */
export function liveHolder(dir: string): LockHolder | undefined {
  const h = readHolder(lockPath(dir));
  return h && isAlive(h) ? h : undefined;
}
