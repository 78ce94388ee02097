/*
 * The version of a package this agent fetched last, read back from the output it wrote (its path is
 * kept beside its manifest, manifests.ts): the chunks an upgrade has in common with it are copied
 * from there, and the chunks it lacks are asked for as deltas against the old chunks they replace
 * (src/content/delta-pairs.ts). The old output is the user's: it may have been edited, truncated or
 * removed since, so every chunk read from it is hashed against its id first, and one that fails is
 * never used (that chunk, or the delta that needed it, is downloaded whole). No second copy of the
 * package is kept in the cache: an agent's disk holds each version once.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { decodeManifest, type Manifest } from '../../src/content/manifest.js';
import type { PairingVersion } from '../../src/content/delta-pairs.js';
import type { Logger } from '../../src/log.js';
import type { TargetBase } from '../../src/read/target-delta.js';
import { verifiedChunk } from '../../src/read/verify.js';
import { packageKind } from './staging.js';

/** Verified old chunks kept in memory while bases overlap (neighbouring targets share windows). */
const MEMO_BYTES = 64 * 1024 * 1024;

interface Place {
  fileIndex: number;
  offset: number;
  length: number;
}

export class OldVersion {
  private readonly places = new Map<string, Place>();
  private readonly handles = new Map<number, Promise<FileHandle | undefined>>();
  private readonly memo = new Map<string, Buffer>();
  private memoBytes = 0;
  /** Old chunks found changed or unreadable: never tried twice. */
  private readonly bad = new Set<string>();

  private constructor(
    readonly version: PairingVersion,
    readonly manifest: Manifest,
    private readonly paths: readonly string[],
    private readonly log: Logger,
  ) {
    manifest.files.forEach((f, fileIndex) => {
      let offset = 0;
      for (const c of f.chunks) {
        if (!this.places.has(c.id)) this.places.set(c.id, { fileIndex, offset, length: c.length });
        offset += c.length;
      }
    });
  }

  /** The old version of a kept manifest (`base`) whose output was written at `out`; undefined if unusable. */
  static from(base: TargetBase, out: string, log: Logger): OldVersion | undefined {
    let m: Manifest;
    try {
      m = decodeManifest(base.bytes, { what: `kept manifest ${base.name}` });
    } catch {
      return undefined; // it was verified when fetched; if it no longer decodes, there is simply no base
    }
    const root = resolve(out);
    const paths = packageKind(m) === 'file' ? [root] : m.files.map((f) => join(root, ...f.path.split('/')));
    const path = base.name.slice(65); // `{sha256}.{path}`
    return new OldVersion({ name: base.name, path, load: () => m }, m, paths, log);
  }

  has(id: string): boolean {
    return this.places.has(id) && !this.bad.has(id);
  }

  /** Old chunk `id` read from the output, when its bytes there still hash to it. */
  async chunk(id: string): Promise<Buffer | undefined> {
    const hit = this.memo.get(id);
    if (hit) return hit;
    const place = this.places.get(id);
    if (!place || this.bad.has(id)) return undefined;
    let data: Buffer | undefined;
    try {
      const fh = await this.handle(place.fileIndex);
      if (fh) {
        const buf = Buffer.allocUnsafe(place.length);
        let got = 0;
        while (got < place.length) {
          const { bytesRead } = await fh.read(buf, got, place.length - got, place.offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got === place.length && verifiedChunk(id, buf)) data = buf;
      }
    } catch (e) {
      this.log.debug({ chunk: id, err: (e as Error).message }, 'old output unreadable');
    }
    if (!data) {
      this.bad.add(id);
      this.log.debug(
        { chunk: id, file: this.paths[place.fileIndex] },
        'old output no longer holds this chunk; not used',
      );
      return undefined;
    }
    if (this.memoBytes + data.length > MEMO_BYTES) {
      this.memo.clear();
      this.memoBytes = 0;
    }
    this.memo.set(id, data);
    this.memoBytes += data.length;
    return data;
  }

  /** Whether the files holding old chunks `ids` are still there (a removed output asks for no deltas). */
  async present(ids: readonly string[]): Promise<boolean> {
    for (const id of ids) {
      const place = this.places.get(id);
      if (!place || this.bad.has(id) || !(await this.handle(place.fileIndex))) return false;
    }
    return true;
  }

  /** The concatenated base chunks `ids`, or why not (one of them changed in the output). */
  async base(ids: readonly string[]): Promise<Buffer | string> {
    const parts: Buffer[] = [];
    for (const id of ids) {
      const c = await this.chunk(id);
      if (!c) return `base chunk ${id} is no longer intact in the old output`;
      parts.push(c);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  private handle(fileIndex: number): Promise<FileHandle | undefined> {
    let h = this.handles.get(fileIndex);
    if (!h) {
      h = open(this.paths[fileIndex]!, 'r').catch(() => undefined);
      this.handles.set(fileIndex, h);
    }
    return h;
  }

  async close(): Promise<void> {
    await Promise.all([...this.handles.values()].map(async (h) => (await h)?.close()));
    this.handles.clear();
    this.memo.clear();
  }
}
