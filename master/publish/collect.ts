import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import { DepotsyncError, fromSystemError } from '../../src/errors.js';
import { normalizeMode } from '../../src/content/manifest.js';
import { validateRelativePath } from '../../src/content/paths.js';

/** One regular file of a package to publish: where it is on disk and its path inside the package. */
export interface SourceFile {
  absPath: string;
  path: string;
  mode: number;
  size: number;
}

export interface CollectOptions {
  /** Publish files that also have hard links outside the folder (refused by default). */
  allowHardlinks?: boolean;
}

/**
 * The files of a publish source: a single file (published under its own name) or a folder walked
 * recursively. A link pointing outside the folder is refused (it would publish bytes the operator did
 * not put in the package); a link inside it is published as the file it points to. A hard link is
 * refused likewise unless every name of the file is inside the folder: a hard link cannot be told
 * apart from the file, so a folder holding one would silently publish a file that lives elsewhere.
 */
export async function collectSource(path: string, options: CollectOptions = {}): Promise<SourceFile[]> {
  let top;
  try {
    top = await stat(path);
  } catch (e) {
    throw fromSystemError(e, `publish source ${path}`);
  }
  if (top.isFile()) {
    const name = basename(path);
    validateRelativePath(name, 'file name');
    return [{ absPath: path, path: name, mode: normalizeMode(top.mode), size: top.size }];
  }
  if (!top.isDirectory())
    throw new DepotsyncError('bad-input', `publish source ${path} is neither a file nor a folder`);
  const root = await realpath(path);
  const out: SourceFile[] = [];
  const links = new Map<string, LinkedFile>();
  await walk(root, root, out, links);
  if (out.length === 0)
    throw new DepotsyncError('bad-input', `publish source ${path} holds no files`, {
      hint: 'a package needs at least one file',
    });
  if (!options.allowHardlinks) refuseOutsideHardlinks(path, links);
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** A regular file with more than one name, and how many of its names the walk met inside the folder. */
interface LinkedFile {
  rel: string;
  nlink: number;
  seen: number;
}

// Block publishing a file from outside the folder through a hard link (nlink counts every name).
function refuseOutsideHardlinks(path: string, links: Map<string, LinkedFile>): void {
  for (const f of links.values()) {
    if (f.seen >= f.nlink) continue;
    const outside = f.nlink - f.seen;
    throw new DepotsyncError(
      'bad-path',
      `publish source ${f.rel}: hard link to a file with ${outside} other name${outside === 1 ? '' : 's'} outside ${path}`,
      {
        hint: 'copy the file into the folder instead of linking it, or pass --allow-hardlinks (allowHardlinks in master.json for the drop folder) to publish it anyway',
      },
    );
  }
}

async function walk(
  root: string,
  dir: string,
  out: SourceFile[],
  links: Map<string, LinkedFile>,
): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw fromSystemError(e, `publish source folder ${dir}`);
  }
  for (const entry of entries) {
    const abs = join(dir, entry.name);
    const rel = relative(root, abs).split(sep).join('/');
    let info = await lstat(abs).catch((e) => {
      throw fromSystemError(e, `publish source ${abs}`);
    });
    let real = abs;
    if (info.isSymbolicLink()) {
      // Block links out of the package: a link must resolve inside the published folder.
      real = await realpath(abs).catch((e) => {
        throw new DepotsyncError('bad-input', `publish source ${rel}: broken link`, { cause: e });
      });
      if (real !== root && !real.startsWith(root + sep)) {
        throw new DepotsyncError(
          'bad-path',
          `publish source ${rel}: link points outside the package folder (to ${real})`,
          {
            hint: 'copy the file into the folder instead of linking to it',
          },
        );
      }
      info = await stat(real);
      if (info.isDirectory()) {
        throw new DepotsyncError('bad-path', `publish source ${rel}: link to a folder is not supported`, {
          hint: 'replace the link with the folder itself',
        });
      }
    }
    if (info.isDirectory()) {
      await walk(root, abs, out, links);
    } else if (info.isFile()) {
      validateRelativePath(rel, 'file path');
      if (info.nlink > 1) {
        // A symbolic link inside the folder does not count as a name of its target (nlink ignores it).
        const key = `${info.dev}:${info.ino}`;
        const f = links.get(key) ?? { rel, nlink: info.nlink, seen: 0 };
        if (real === abs) f.seen++;
        links.set(key, f);
      }
      out.push({ absPath: real, path: rel, mode: normalizeMode(info.mode), size: info.size });
    } else {
      throw new DepotsyncError(
        'bad-input',
        `publish source ${rel}: not a regular file (device, socket or pipe)`,
      );
    }
  }
}
