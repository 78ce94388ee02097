import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { DepotsyncError } from '../errors.js';

/** Is the file system holding `file` full? (SQLite reports some ENOSPC, e.g. growing its -shm file, as I/O errors.) */
function diskFullAt(file: string): boolean {
  try {
    const s = statfsSync(dirname(file));
    return s.bavail * s.bsize < 64 * 1024 || (s.files > 0 && s.ffree === 0);
  } catch {
    return false;
  }
}

/**
 * Map a better-sqlite3 error (it carries SQLite's extended result code in `code`, e.g. 'SQLITE_FULL')
 * to a typed error that names the object. Errors that are already typed pass through unchanged.
 */
export function fromSqliteError(e: unknown, what: string, file?: string): DepotsyncError {
  if (e instanceof DepotsyncError) return e;
  const code = typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : '';
  const message = e instanceof Error ? e.message : String(e);
  if (code === 'SQLITE_FULL' || (code.startsWith('SQLITE_IOERR') && file !== undefined && diskFullAt(file))) {
    return new DepotsyncError('disk-full', `${what}: no space left on device`, {
      hint: 'free disk space and run the command again; the last committed state is intact',
      cause: e,
    });
  }
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return new DepotsyncError(
      'corrupt',
      `${what}: the database file is damaged or is not a SQLite database (${message})`,
      {
        hint: 'restore the database from a backup',
        cause: e,
      },
    );
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new DepotsyncError(
      'timeout',
      `${what}: the database stayed locked by another process (${message})`,
      {
        hint: 'another depotsync process is writing; try again, or stop the other process',
        cause: e,
      },
    );
  }
  if (
    code.startsWith('SQLITE_READONLY') ||
    code.startsWith('SQLITE_PERM') ||
    code.startsWith('SQLITE_CANTOPEN')
  ) {
    return new DepotsyncError('io', `${what}: cannot open or write the database (${message})`, {
      hint: 'check that the directory exists and is writable by this user',
      cause: e,
    });
  }
  if (code.startsWith('SQLITE_CONSTRAINT')) {
    return new DepotsyncError('conflict', `${what}: ${message}`, { cause: e });
  }
  return new DepotsyncError(code.startsWith('SQLITE_IOERR') ? 'io' : 'internal', `${what}: ${message}`, {
    cause: e,
  });
}
