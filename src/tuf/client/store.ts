import { mkdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fromSystemError } from '../../errors.js';
import { writeFileAtomic } from '../../fs/atomic-write.js';
import { quoteRoleName } from '../context.js';
import { DepotsyncError } from '../../errors.js';

/**
 * Where the client keeps the metadata it trusts, by role (`root`, `timestamp`, `snapshot`, `targets`,
 * `bin-3a`). Saved only after verification; loaded metadata is verified again (signatures) before use.
 */
export interface TrustedStore {
  load(role: string): Promise<Uint8Array | undefined>;
  save(role: string, bytes: Uint8Array, version: number): Promise<void>;
  remove(role: string): Promise<void>;
}

function checkRole(role: string): string {
  if (typeof role !== 'string' || role.length === 0 || role.length > 200) {
    const what = `trusted metadata role ${JSON.stringify(role)}`;
    throw new DepotsyncError('bad-path', `${what} must be a name of 1 to 200 characters`);
  }
  return role;
}

/** `{role}.json` with the role name percent-quoted (`?` is stored as `%3F.json`, `../x` as `..%2Fx.json`). */
const fileOf = (role: string) => `${quoteRoleName(checkRole(role))}.json`;

export class MemoryTrustedStore implements TrustedStore {
  readonly files = new Map<string, Uint8Array>();
  /** Every root version saved, by version (a mirror re-serves them as `{N}.root.json`). */
  readonly roots = new Map<number, Uint8Array>();

  async load(role: string): Promise<Uint8Array | undefined> {
    return this.files.get(checkRole(role));
  }
  async save(role: string, bytes: Uint8Array, version: number): Promise<void> {
    this.files.set(checkRole(role), bytes);
    if (role === 'root') this.roots.set(version, bytes);
  }
  async remove(role: string): Promise<void> {
    this.files.delete(checkRole(role));
  }
}

/**
 * One folder, `{role}.json` per role, the name quoted (the layout python-tuf and the conformance suite use),
 * each written atomically; with `keepRootHistory`, every root version also as `{N}.root.json`.
 */
export class DirectoryTrustedStore implements TrustedStore {
  constructor(
    private readonly dir: string,
    private readonly opts: { keepRootHistory?: boolean } = {},
  ) {}

  async load(role: string): Promise<Uint8Array | undefined> {
    const path = join(this.dir, fileOf(role));
    try {
      return await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw fromSystemError(e, `trusted metadata ${path}`);
    }
  }

  async save(role: string, bytes: Uint8Array, version: number): Promise<void> {
    await mkdir(this.dir, { recursive: true }).catch((e) => {
      throw fromSystemError(e, `trusted metadata folder ${this.dir}`);
    });
    if (role === 'root' && this.opts.keepRootHistory)
      await writeFileAtomic(join(this.dir, `${version}.root.json`), bytes);
    await writeFileAtomic(join(this.dir, fileOf(role)), bytes);
  }

  async remove(role: string): Promise<void> {
    await unlink(join(this.dir, fileOf(role))).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw fromSystemError(e, `trusted metadata ${fileOf(role)}`);
    });
  }
}
