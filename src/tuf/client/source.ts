import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { DepotsyncError, fromSystemError } from '../../errors.js';

/**
 * Where the client gets metadata files: an HTTPS mirror, an offline bundle, a folder. The client does
 * not know which. `name` is a consistent-snapshot file name (`2.root.json`, `timestamp.json`,
 * `5.snapshot.json`, `5.bin-3a.json`). A source must throw DepotsyncError `not-found` for a file it
 * does not have (that ends the root walk) and `too-large` as soon as more than `maxBytes` arrive
 * (count while streaming; the client checks again).
 */
export interface MetadataSource {
  fetch(name: string, maxBytes: number): Promise<Uint8Array>;
}

/**
 * Metadata file names are plain: no folders, no traversal. Delegated role names are percent-quoted
 * (`%3F.json` for role `?`, `..%2Fx.json` for `../x`), so a name never holds a `/`.
 */
export const METADATA_FILE_NAME = /^(?:\d{1,15}\.)?[A-Za-z0-9%._~-]{1,255}\.json$/;

export function checkMetadataFileName(name: string): string {
  if (!METADATA_FILE_NAME.test(name)) {
    throw new DepotsyncError(
      'bad-path',
      `metadata file name ${JSON.stringify(name)} is not of the form [N.]role.json`,
    );
  }
  return name;
}

export function tooLarge(name: string, maxBytes: number, got?: number): DepotsyncError {
  return new DepotsyncError(
    'too-large',
    `metadata ${name}: ${got === undefined ? 'more than' : `${got} bytes exceeds`} the limit of ${maxBytes} bytes`,
    {
      hint: 'the source sent more than any valid file of this role; try another source',
    },
  );
}

export function notFound(name: string, where: string): DepotsyncError {
  return new DepotsyncError('not-found', `metadata ${name}: not found in ${where}`);
}

/** Files held in memory: tests, and offline bundles whose table of contents was already read. */
export class MemorySource implements MetadataSource {
  private readonly files: Map<string, Uint8Array>;

  constructor(
    files: Iterable<readonly [string, Uint8Array]> = [],
    private readonly where = 'memory',
  ) {
    this.files = new Map(files);
  }

  set(name: string, bytes: Uint8Array): void {
    this.files.set(checkMetadataFileName(name), bytes);
  }

  delete(name: string): void {
    this.files.delete(name);
  }

  has(name: string): boolean {
    return this.files.has(name);
  }

  async fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    const bytes = this.files.get(checkMetadataFileName(name));
    if (!bytes) throw notFound(name, this.where);
    if (bytes.length > maxBytes) throw tooLarge(name, maxBytes, bytes.length);
    return bytes;
  }
}

/** A folder of metadata files (an unpacked bundle, a mirror on disk). */
export class DirectorySource implements MetadataSource {
  constructor(private readonly dir: string) {}

  async fetch(name: string, maxBytes: number): Promise<Uint8Array> {
    const path = join(this.dir, checkMetadataFileName(name));
    let fh;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(name, this.dir);
      throw fromSystemError(e, `metadata ${path}`);
    }
    try {
      // Refuse by size before reading; check again after (the file may grow meanwhile).
      if ((await fh.stat()).size > maxBytes) throw tooLarge(name, maxBytes);
      const bytes = await fh.readFile();
      if (bytes.length > maxBytes) throw tooLarge(name, maxBytes, bytes.length);
      return bytes;
    } finally {
      await fh.close();
    }
  }
}
