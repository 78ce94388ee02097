import {
  chunkAt,
  chunkStarts,
  DELTA_WINDOW_BYTES,
  MAX_DELTA_BASES,
  renamedFiles,
} from '../content/delta-pairs.js';
import type { Manifest, ManifestFile } from '../content/manifest.js';

/**
 * Delta bases chosen by content (src/wire/chunk-delta.ts, kind 5). The pairing both ends compute from
 * the manifests (src/content/delta-pairs.ts) takes the old file's window around the same relative
 * position; compiler output moves code far beyond that window. Here the sender, which holds the old
 * file, finds where a new chunk's bytes came from: the old file's 32-byte blocks (every `step` bytes)
 * are indexed by hash, each offset of the new chunk is looked up, and every hit votes for the old
 * offset the chunk's start lines up with. The window of DELTA_WINDOW_BYTES around the winner is the
 * base. Measured in bench/README.md ("Tiny upgrades and delta bases chosen by content").
 */

export const ANCHOR_BYTES = 32;
/** Anchors kept per old file: two 16 MiB tables at most; longer files are indexed more sparsely. */
const MAX_ANCHORS = 1 << 21;
/** Votes are counted per this many bytes of old offset. */
const VOTE_BIN = 4096;
/** Fewer hits than this: the content says nothing, the positional window stays. */
const MIN_VOTES = 16;

function anchorHash(b: Uint8Array, i: number): number {
  let h = 2166136261;
  for (let j = 0; j < ANCHOR_BYTES; j += 4) {
    const w = b[i + j]! | (b[i + j + 1]! << 8) | (b[i + j + 2]! << 16) | (b[i + j + 3]! << 24);
    h = Math.imul(h ^ w, 16777619);
  }
  return h >>> 0 || 1;
}

const pause = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Old offsets of an old file's 32-byte blocks by hash (open addressing; the first offset wins). */
export class AnchorIndex {
  private constructor(
    private readonly keys: Uint32Array,
    private readonly slots: Uint32Array,
    readonly step: number,
    readonly file: ManifestFile,
  ) {}

  /**
   * Index `file`, its chunks read through `read` (undefined: the file cannot be indexed). Yields to the
   * event loop every few hundred KiB so that a server indexing a large file keeps answering.
   */
  static async build(
    file: ManifestFile,
    read: (id: string) => Promise<Uint8Array | undefined>,
  ): Promise<AnchorIndex | undefined> {
    const step = ANCHOR_BYTES * Math.max(1, Math.ceil(file.size / (ANCHOR_BYTES * MAX_ANCHORS)));
    const anchors = Math.ceil(file.size / step);
    let size = 1024;
    while (size < anchors * 2) size *= 2;
    const index = new AnchorIndex(new Uint32Array(size), new Uint32Array(size), step, file);
    let tail: Uint8Array = new Uint8Array(0);
    let pos = 0; // old offset of the next chunk's first byte
    let sincePause = 0;
    for (const c of file.chunks) {
      const bytes = await read(c.id);
      if (!bytes || bytes.length !== c.length) return undefined;
      const buf = tail.length ? Buffer.concat([tail, bytes]) : bytes;
      const bufStart = pos - tail.length;
      for (let p = Math.ceil(bufStart / step) * step; p - bufStart + ANCHOR_BYTES <= buf.length; p += step)
        index.insert(anchorHash(buf, p - bufStart), p / step + 1);
      pos += bytes.length;
      tail = buf.subarray(Math.max(0, buf.length - (ANCHOR_BYTES - 1)));
      tail = Uint8Array.from(tail);
      sincePause += bytes.length;
      if (sincePause >= 512 * 1024) {
        sincePause = 0;
        await pause();
      }
    }
    return index;
  }

  private insert(hash: number, slot: number): void {
    const mask = this.keys.length - 1;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      if (this.keys[i] === 0) {
        this.keys[i] = hash;
        this.slots[i] = slot;
        return;
      }
      if (this.keys[i] === hash) return;
    }
  }

  private lookup(hash: number): number {
    const mask = this.keys.length - 1;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const k = this.keys[i]!;
      if (k === 0) return -1;
      if (k === hash) return (this.slots[i]! - 1) * this.step;
    }
  }

  /** The old offset `target`'s first byte lines up with, by most votes; undefined with too few. */
  vote(target: Uint8Array): number | undefined {
    const votes = new Map<number, number>();
    for (let i = 0; i + ANCHOR_BYTES <= target.length; i++) {
      const p = this.lookup(anchorHash(target, i));
      if (p < 0) continue;
      const bin = Math.round((p - i) / VOTE_BIN);
      votes.set(bin, (votes.get(bin) ?? 0) + 1);
    }
    let best: number | undefined;
    let most = MIN_VOTES - 1;
    for (const [bin, n] of votes) if (n > most) [best, most] = [bin, n];
    return best === undefined ? undefined : best * VOTE_BIN;
  }

  private firstIndex: Map<string, number> | undefined;
  private startsCache: number[] | undefined;

  private starts(): number[] {
    return (this.startsCache ??= chunkStarts(this.file));
  }

  /** Whether the old bytes [start, start + length) lie inside the run of old chunks `bases`. */
  covers(bases: readonly string[], start: number, length: number): boolean {
    if (!this.firstIndex) {
      this.firstIndex = new Map();
      this.file.chunks.forEach((c, i) => {
        if (!this.firstIndex!.has(c.id)) this.firstIndex!.set(c.id, i);
      });
    }
    const first = this.firstIndex.get(bases[0] ?? '');
    if (first === undefined) return false;
    const starts = this.starts();
    const last = first + bases.length - 1;
    if (last >= this.file.chunks.length) return false;
    return start >= starts[first]! && start + length <= starts[last]! + this.file.chunks[last]!.length;
  }

  /** The old chunks covering DELTA_WINDOW_BYTES around a target of `length` starting at old `start`. */
  window(start: number, length: number): string[] {
    const f = this.file;
    const starts = this.starts();
    const centre = start + Math.floor(length / 2);
    const lo = Math.max(0, Math.min(f.size - 1, centre - DELTA_WINDOW_BYTES / 2));
    const hi = Math.max(lo, Math.min(f.size - 1, centre + DELTA_WINDOW_BYTES / 2 - 1));
    let first = chunkAt(starts, f.size, lo);
    let last = chunkAt(starts, f.size, hi);
    while (last - first + 1 > MAX_DELTA_BASES) {
      if (centre - starts[first]! > starts[last]! - centre) first++;
      else last--;
    }
    return f.chunks.slice(first, last + 1).map((c) => c.id);
  }
}

/** For each wanted chunk of `now`, the file of `old` it is paired with (same path, or renamed from). */
export function oldFileOf(
  now: Manifest,
  old: Manifest,
  wanted: ReadonlySet<string>,
): Map<string, ManifestFile> {
  const out = new Map<string, ManifestFile>();
  const oldFiles = new Map(old.files.map((f) => [f.path, f]));
  const renamed = renamedFiles(old, now);
  for (const f of now.files) {
    const of = oldFiles.get(f.path) ?? renamed.get(f.path);
    if (!of || of.size === 0) continue;
    for (const c of f.chunks) if (wanted.has(c.id) && !out.has(c.id)) out.set(c.id, of);
  }
  return out;
}

/**
 * Chooses bases by content for one (new version, old version) pair: one index at a time, built when
 * a chunk of another old file comes (callers go through the chunks file by file).
 */
export class ContentBases {
  private index: { file: ManifestFile; index: AnchorIndex | undefined } | undefined;

  constructor(
    private readonly files: Map<string, ManifestFile>,
    private readonly read: (id: string) => Promise<Uint8Array | undefined>,
  ) {}

  /**
   * The bases for `target` (its bytes), or undefined when the content does not say or says the pair's
   * own `window` holds it (an edit in place: a frame against the window needs no ids on the wire).
   */
  async choose(
    targetId: string,
    target: Uint8Array,
    window: readonly string[] = [],
  ): Promise<string[] | undefined> {
    const file = this.files.get(targetId);
    if (!file) return undefined;
    if (this.index?.file !== file) {
      this.index = undefined; // let the previous table go before building the next
      this.index = { file, index: await AnchorIndex.build(file, this.read) };
    }
    const idx = this.index.index;
    if (!idx) return undefined;
    const start = idx.vote(target);
    await pause();
    if (start === undefined || idx.covers(window, start, target.length)) return undefined;
    return idx.window(start, target.length);
  }
}
