import { cp, lstat, mkdir, readdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { nameProblem } from '../../src/content/paths.js';
import { fromSystemError } from '../../src/errors.js';

/**
 * One drop: `dropbox/NAME/VERSION/` (the key `NAME/VERSION`), or a stray entry directly in the drop
 * folder (key `NAME`). This module looks at a drop on disk and moves a bad one aside; watcher.ts
 * decides when to look.
 */

/** What a drop holds right now: every entry with its type, size and mtime, without following links. */
export interface DropSnapshot {
  /** Equal signatures = nothing was added, removed, resized or touched in between. */
  signature: string;
  files: number;
  isDirectory: boolean;
}

/** Snapshot of `abs` (undefined when it no longer exists). */
export async function snapshotDrop(abs: string): Promise<DropSnapshot | undefined> {
  const lines: string[] = [];
  let files = 0;
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = join(dir, e.name);
      const st = await lstat(p);
      const kind = st.isSymbolicLink() ? 'l' : st.isDirectory() ? 'd' : st.isFile() ? 'f' : 'o';
      lines.push(`${rel}${e.name}\0${kind}\0${st.size}\0${st.mtimeMs}`);
      if (kind === 'd') await walk(p, `${rel}${e.name}/`);
      else files++;
    }
  };
  try {
    const top = await lstat(abs);
    if (!top.isDirectory())
      return {
        signature: `${top.size}\0${top.mtimeMs}\0${top.isSymbolicLink()}`,
        files: 1,
        isDirectory: false,
      };
    await walk(abs, '');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(e, `drop ${abs}`);
  }
  return { signature: lines.join('\n'), files, isDirectory: true };
}

/**
 * Why the drop at key `segments` cannot be published as it stands, or undefined when it looks right
 * (the publish itself still checks every file and link inside).
 */
export async function dropProblem(dropbox: string, segments: string[]): Promise<string | undefined> {
  const [name, version] = segments;
  if (name === undefined || version === undefined) {
    return 'a drop must be a folder NAME/VERSION/ holding the package files; this entry is directly in the drop folder';
  }
  const nameSt = await lstat(join(dropbox, name));
  // A linked package or version folder would publish whatever it points to, from anywhere on the disk.
  if (nameSt.isSymbolicLink())
    return `package folder ${name} is a link; copy the folder into the drop folder instead`;
  const st = await lstat(join(dropbox, name, version));
  if (st.isSymbolicLink())
    return `version folder ${name}/${version} is a link pointing elsewhere; copy the files into the drop folder instead`;
  if (!st.isDirectory())
    return `${name}/${version} is a file; a drop must be a folder NAME/VERSION/ holding the package files`;
  const badName = nameProblem(name);
  if (badName) return `bad package name ${JSON.stringify(name)}: ${badName}`;
  const badVersion = nameProblem(version);
  if (badVersion) return `bad package version ${JSON.stringify(version)}: ${badVersion}`;
  return undefined;
}

/**
 * Move a bad drop to `rejected/NAME/VERSION-<time>/` (or `rejected/NAME-<time>/` for a stray entry) with
 * a REASON.txt next to its files; a drop that is a single file is put inside that folder. Returns where.
 */
export async function rejectDrop(
  dropbox: string,
  rejected: string,
  segments: string[],
  reason: string,
  now: Date,
): Promise<string> {
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  const src = join(dropbox, ...segments);
  const dest = join(rejected, ...segments.slice(0, -1), `${segments[segments.length - 1]}-${stamp}`);
  await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
  const st = await lstat(src);
  const target = st.isDirectory() ? dest : join(dest, segments[segments.length - 1] as string);
  if (!st.isDirectory()) await mkdir(dest, { recursive: true, mode: 0o700 });
  try {
    await rename(src, target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV')
      throw fromSystemError(e, `moving rejected drop ${src}`);
    // The drop folder is on another file system: copy (links as links), then remove.
    await cp(src, target, { recursive: true, verbatimSymlinks: true });
    await rm(src, { recursive: true, force: true });
  }
  await writeFile(
    join(dest, 'REASON.txt'),
    `${reason}\n\nrejected at ${now.toISOString()} from ${segments.join('/')}\n`,
  );
  return dest;
}

/** A published drop is removed; so is its package folder once empty (a new version may arrive later). */
export async function removePublishedDrop(dropbox: string, segments: string[]): Promise<void> {
  await rm(join(dropbox, ...segments), { recursive: true, force: true });
  if (segments.length === 2) await rmdir(join(dropbox, segments[0] as string)).catch(() => undefined);
}
