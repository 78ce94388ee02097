import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';

/**
 * Zstd chunk deltas kept on disk (src/wire/chunk-delta.ts, kind `zstd`): the master's, computed in the
 * background after a publish, and a depot's, received from its upstream and served again to its own
 * children and agents, who pair the same chunks from the same signed manifests and so ask for the same
 * (target, bases) keys. An entry is never trusted: whoever rebuilds a chunk from it hashes the result.
 *
 * One file per (target, bases): `{dir}/{target[0:2]}/{target}.{sha256(bases)[0:32]}`. Written to a
 * temporary name and renamed, so a crash leaves a whole entry or none (stray temporaries are removed
 * by `collect`). An empty file records "no delta pays off for this pair" so it is not computed again.
 * Bounded: past `maxBytes`, `collect` removes the least recently written entries.
 *
 * An entry is either a zstd frame against the pair's bases, or (`chosenEntry`) a frame against other
 * chunks of the same old version, chosen by content: `DSCB`, u16 BE count N, N × 32-byte chunk ids,
 * then the frame. Only receivers that accept chosen bases get the latter (src/wire/chunk-delta.ts).
 */
export interface DeltaCacheOptions {
  dir: string;
  /** Most bytes of entries kept; 0 = no limit. */
  maxBytes: number;
  log?: Logger;
}

const TARGET = /^[0-9a-f]{64}$/;
const CHOSEN_MAGIC = Buffer.from('DSCB', 'latin1');

/** The cache entry of a frame made against `bases` chosen by content instead of the pair's bases. */
export function chosenEntry(bases: readonly string[], frame: Uint8Array): Buffer {
  const head = Buffer.alloc(CHOSEN_MAGIC.length + 2 + 32 * bases.length);
  CHOSEN_MAGIC.copy(head, 0);
  head.writeUInt16BE(bases.length, CHOSEN_MAGIC.length);
  bases.forEach((b, i) => head.write(b, CHOSEN_MAGIC.length + 2 + 32 * i, 32, 'hex'));
  return Buffer.concat([head, frame]);
}

/** What an entry holds: a frame against the pair's bases, one against chosen bases, or nothing usable. */
export function parseEntry(
  entry: Buffer,
): { kind: 'pair'; frame: Buffer } | { kind: 'chosen'; bases: string[]; frame: Buffer } | undefined {
  if (entry.length === 0) return undefined;
  if (!entry.subarray(0, CHOSEN_MAGIC.length).equals(CHOSEN_MAGIC)) return { kind: 'pair', frame: entry };
  const at = CHOSEN_MAGIC.length + 2;
  if (entry.length < at) return undefined;
  const n = entry.readUInt16BE(CHOSEN_MAGIC.length);
  if (n < 1 || entry.length <= at + 32 * n) return undefined;
  const bases = Array.from({ length: n }, (_, i) => entry.toString('hex', at + 32 * i, at + 32 * (i + 1)));
  return { kind: 'chosen', bases, frame: entry.subarray(at + 32 * n) };
}

export function deltaKey(target: string, bases: readonly string[]): string {
  return `${target}.${createHash('sha256').update(bases.join(',')).digest('hex').slice(0, 32)}`;
}

export class DeltaCache {
  private bytesSinceCollect = 0;

  constructor(readonly opts: DeltaCacheOptions) {}

  private path(key: string): string {
    return join(this.opts.dir, key.slice(0, 2), key);
  }

  /** The stored frame; an empty Buffer when the pair was found not to pay off; undefined when unknown. */
  async get(target: string, bases: readonly string[]): Promise<Buffer | undefined> {
    try {
      return await fs.readFile(this.path(deltaKey(target, bases)));
    } catch {
      return undefined;
    }
  }

  async has(target: string, bases: readonly string[]): Promise<boolean> {
    try {
      await fs.stat(this.path(deltaKey(target, bases)));
      return true;
    } catch {
      return false;
    }
  }

  /** Store `frame` (empty: no delta pays off) for the pair, atomically. Errors are logged, not thrown. */
  async put(target: string, bases: readonly string[], frame: Uint8Array): Promise<void> {
    if (!TARGET.test(target)) return;
    const final = this.path(deltaKey(target, bases));
    const tmp = `${final}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      await fs.mkdir(join(this.opts.dir, target.slice(0, 2)), { recursive: true });
      await fs.writeFile(tmp, frame);
      await fs.rename(tmp, final);
      this.bytesSinceCollect += frame.length;
      if (this.opts.maxBytes > 0 && this.bytesSinceCollect > this.opts.maxBytes / 8) {
        this.bytesSinceCollect = 0;
        await this.collect();
      }
    } catch (e) {
      await fs.rm(tmp, { force: true }).catch(() => undefined);
      this.opts.log?.warn({ err: (e as Error).message, target }, 'delta cache: entry not stored');
    }
  }

  /**
   * Remove temporaries, entries whose target `live` rejects (its versions were collected), then the
   * oldest entries beyond `maxBytes`. Returns what was removed.
   */
  async collect(
    live?: (target: string) => boolean,
  ): Promise<{ removed: number; bytes: number; kept: number }> {
    const entries: Array<{ path: string; size: number; mtime: number }> = [];
    let removed = 0;
    let freed = 0;
    let dirs: string[];
    try {
      dirs = await fs.readdir(this.opts.dir);
    } catch {
      return { removed: 0, bytes: 0, kept: 0 };
    }
    for (const d of dirs) {
      let names: string[];
      try {
        names = await fs.readdir(join(this.opts.dir, d));
      } catch {
        continue;
      }
      for (const name of names) {
        const path = join(this.opts.dir, d, name);
        const st = await fs.stat(path).catch(() => undefined);
        if (!st) continue;
        const stale = name.includes('.tmp-') && Date.now() - st.mtimeMs > 3_600_000;
        if (stale || (live && !name.includes('.tmp-') && !live(name.slice(0, 64)))) {
          await fs.rm(path, { force: true });
          removed++;
          freed += st.size;
        } else if (!name.includes('.tmp-')) entries.push({ path, size: st.size, mtime: st.mtimeMs });
      }
    }
    let total = entries.reduce((s, e) => s + e.size, 0);
    if (this.opts.maxBytes > 0 && total > this.opts.maxBytes) {
      entries.sort((a, b) => a.mtime - b.mtime);
      for (const e of entries) {
        if (total <= this.opts.maxBytes) break;
        await fs.rm(e.path, { force: true });
        total -= e.size;
        removed++;
        freed += e.size;
      }
    }
    return { removed, bytes: freed, kept: total };
  }
}
