import { randomBytes } from 'node:crypto';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { openSync, writeSync, fsyncSync, closeSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fromSystemError } from '../errors.js';

/**
 * The temporary name of an atomic write: `.NAME.PID-RANDOM.tmp` beside the file. The writer's pid lets a
 * later writer remove what a killed one left (removeStaleTempFiles) without touching one still running.
 */
function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
}

/**
 * Windows cannot open a folder as a file (EPERM: Node does not pass FILE_FLAG_BACKUP_SEMANTICS), so
 * there is no folder to fsync; NTFS journals the rename's metadata itself.
 */
const FOLDERS_OPEN_AS_FILES = process.platform !== 'win32';

const TEMP_NAME = /^\.(.+)\.(\d+)-[0-9a-f]{12}\.tmp$/;

/**
 * Remove the temporary files of atomic writes into `dir` whose file name starts with `prefix` and whose
 * writer process is gone (killed mid-write). Files of live writers (this process included) stay.
 */
export async function removeStaleTempFiles(dir: string, prefix: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = TEMP_NAME.exec(name);
    if (!m || !m[1]!.startsWith(prefix) || processAlive(Number(m[2]))) continue;
    await unlink(join(dir, name)).then(
      () => removed.push(name),
      () => undefined,
    );
  }
  return removed;
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/**
 * Write a file so that a reader (or a crash) sees either the old content or the new, never half:
 * temporary name in the same folder, fsync, rename, fsync of the folder.
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  opts: { mode?: number } = {},
): Promise<void> {
  const tmp = tempName(path);
  try {
    const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await fsyncDir(dirname(path));
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw fromSystemError(e, `write ${path}`);
  }
}

/** Synchronous twin for start-up code paths (init) that have no event loop work to overlap. */
export function writeFileAtomicSync(
  path: string,
  data: Uint8Array | string,
  opts: { mode?: number } = {},
): void {
  const tmp = tempName(path);
  try {
    const fd = openSync(tmp, 'wx', opts.mode ?? 0o644);
    try {
      const buf = typeof data === 'string' ? Buffer.from(data) : data;
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    if (!FOLDERS_OPEN_AS_FILES) return;
    const dfd = openSync(dirname(path), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw fromSystemError(e, `write ${path}`);
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  if (!FOLDERS_OPEN_AS_FILES) return;
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
