import type { Manifest, ManifestFile } from './manifest.js';

/** Base chunks of one pair (the wire format's limit, CHUNK_DELTA_LIMITS.maxBases, is this number). */
export const MAX_DELTA_BASES = 24;

/**
 * The window of the old file a new chunk is encoded against: this many bytes around the new chunk's
 * relative position, its centre rounded to `DELTA_WINDOW_STEP` so that neighbouring chunks share one
 * window (one list of ids on the wire). Measured in bench/README.md ("Version deltas").
 */
export const DELTA_WINDOW_BYTES = 256 * 1024;
export const DELTA_WINDOW_STEP = 128 * 1024;

/**
 * Which old chunks a new chunk replaces: the pairing behind chunk deltas (src/wire/chunk-delta.ts),
 * shared by a depot asking its upstream for deltas (depot/sync/chunk-delta.ts) and by the master
 * writing deltas into an offline bundle (master/offline/export.ts), which the importing depot pairs
 * again the same way. A pure function of the manifests: the same versions give the same pairs.
 */

/** A package version whose manifest is decoded on demand (undefined: unreadable, so no base). */
export interface PairingVersion {
  /** The consistent-snapshot target name `{sha256}.{path}` (identifies the version). */
  name: string;
  /** The target path `{name}@{version}.json`. */
  path: string;
  load: () => Manifest | undefined;
}

export interface ChunkBases {
  /** The old chunks, in file order, whose concatenation is the base. */
  bases: string[];
  /** Where the new chunk starts in the concatenated bases if the edit kept file offsets. */
  offset: number;
}

/** The package name of a target path `{name}@{version}.json` (names and versions never contain '@'). */
export function packageOf(path: string): string {
  const at = path.lastIndexOf('@');
  return at > 0 ? path.slice(0, at) : path;
}

/**
 * Files of the new version whose path the old version lacks, paired with the old file they most
 * likely replace (installers are often renamed with their version: setup-1.0.exe → setup-1.1.exe):
 * among the old files whose path is gone, the one sharing most chunks; a single renamed file pairs
 * with a single vanished one even when they share no chunk (every chunk edited).
 */
export function renamedFiles(old: Manifest, now: Manifest): Map<string, ManifestFile> {
  const nowPaths = new Set(now.files.map((f) => f.path));
  const oldPaths = new Set(old.files.map((f) => f.path));
  const gone = old.files.filter((f) => !nowPaths.has(f.path));
  const added = now.files.filter((f) => !oldPaths.has(f.path));
  const out = new Map<string, ManifestFile>();
  if (gone.length === 0 || added.length === 0) return out;
  if (gone.length === 1 && added.length === 1) {
    out.set(added[0]!.path, gone[0]!);
    return out;
  }
  const goneIds = gone.map((f) => new Set(f.chunks.map((c) => c.id)));
  for (const f of added) {
    let best = -1;
    let bestShared = 0;
    goneIds.forEach((ids, i) => {
      let shared = 0;
      for (const c of f.chunks) if (ids.has(c.id)) shared++;
      if (shared > bestShared) [best, bestShared] = [i, shared];
    });
    if (best >= 0) out.set(f.path, gone[best]!);
  }
  return out;
}

/** The start offset of each chunk of a file, for a binary search by offset. */
export function chunkStarts(f: ManifestFile): number[] {
  const starts = new Array<number>(f.chunks.length);
  let off = 0;
  f.chunks.forEach((c, i) => {
    starts[i] = off;
    off += c.length;
  });
  return starts;
}

/** Index of the chunk of a file that contains byte `offset`, or -1 past its end. */
export function chunkAt(starts: readonly number[], size: number, offset: number): number {
  if (offset >= size || starts.length === 0) return -1;
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * The run of old chunks a new chunk at `offset` (of `length`) in a file of `newSize` bytes is encoded
 * against: the chunks of the old file covering DELTA_WINDOW_BYTES around the same relative position
 * (compiled code shifts everywhere, but stays roughly in place), at most MAX_DELTA_BASES, nearest the
 * centre first. `offset` in the result: where the new chunk would start in the run if the edit kept
 * file offsets (0 when that is outside the run).
 */
function windowBases(
  of: ManifestFile,
  starts: readonly number[],
  offset: number,
  length: number,
  newSize: number,
): ChunkBases | undefined {
  if (of.chunks.length === 0 || of.size === 0) return undefined;
  const scale = newSize > 0 ? of.size / newSize : 1;
  const centre = Math.round(((offset + length / 2) * scale) / DELTA_WINDOW_STEP) * DELTA_WINDOW_STEP;
  const lo = Math.max(0, Math.min(of.size - 1, centre - DELTA_WINDOW_BYTES / 2));
  const hi = Math.max(lo, Math.min(of.size - 1, centre + DELTA_WINDOW_BYTES / 2 - 1));
  let first = chunkAt(starts, of.size, lo);
  let last = chunkAt(starts, of.size, hi);
  while (last - first + 1 > MAX_DELTA_BASES) {
    // Trim the end farther from the centre.
    if (centre - starts[first]! > starts[last]! - centre) first++;
    else last--;
  }
  const runStart = starts[first]!;
  const runEnd = starts[last]! + of.chunks[last]!.length;
  return {
    bases: of.chunks.slice(first, last + 1).map((b) => b.id),
    offset: offset >= runStart && offset < runEnd ? offset - runStart : 0,
  };
}

/**
 * Pair each wanted chunk of `targets` with the chunks it replaces in `olds`. For every target, the old
 * versions of the same package are the candidates; the one sharing most chunks with the new version is
 * the base manifest. In each file (same path, or the file it was renamed from), a new chunk's base is
 * the window of old chunks around its relative position (`windowBases`): it holds the old chunk at the
 * same offset for an in-place edit (`offset` says where) and, for compiled code that moved, the code
 * the chunk came from.
 */
export function pairChunkBases(
  targets: readonly PairingVersion[],
  olds: readonly PairingVersion[],
  wanted: ReadonlySet<string>,
): Map<string, ChunkBases> {
  const bases = new Map<string, ChunkBases>();
  if (wanted.size === 0 || olds.length === 0) return bases;
  const byPackage = new Map<string, PairingVersion[]>();
  for (const t of olds) {
    const pkg = packageOf(t.path);
    byPackage.set(pkg, [...(byPackage.get(pkg) ?? []), t]);
  }
  const decoded = new Map<string, Manifest | undefined>();
  const manifest = (v: PairingVersion): Manifest | undefined => {
    if (!decoded.has(v.name)) decoded.set(v.name, v.load());
    return decoded.get(v.name);
  };
  for (const t of targets) {
    const candidates = (byPackage.get(packageOf(t.path)) ?? []).filter((o) => o.name !== t.name);
    if (candidates.length === 0) continue;
    const m = manifest(t);
    if (!m || !m.files.some((f) => f.chunks.some((c) => wanted.has(c.id) && !bases.has(c.id)))) continue;
    const ids = new Set(m.files.flatMap((f) => f.chunks.map((c) => c.id)));
    let best: Manifest | undefined;
    let bestShared = -1;
    for (const o of candidates) {
      const om = manifest(o);
      if (!om) continue;
      let shared = 0;
      for (const f of om.files) for (const c of f.chunks) if (ids.has(c.id)) shared++;
      if (shared > bestShared) [best, bestShared] = [om, shared];
    }
    if (!best) continue;
    const oldFiles = new Map(best.files.map((f) => [f.path, f]));
    const renamed = renamedFiles(best, m);
    for (const f of m.files) {
      const of = oldFiles.get(f.path) ?? renamed.get(f.path);
      if (!of) continue;
      const starts = chunkStarts(of);
      let offset = 0;
      for (const c of f.chunks) {
        if (wanted.has(c.id) && !bases.has(c.id)) {
          const w = windowBases(of, starts, offset, c.length, f.size);
          if (w) bases.set(c.id, w);
        }
        offset += c.length;
      }
    }
  }
  return bases;
}

/**
 * A pair of a bundle's `chunk-deltas` section (src/wire/chunk-delta.ts): the
 * target chunk, its length, its bases.
 */
export interface BundlePair extends ChunkBases {
  target: string;
  length: number;
}

/**
 * The pairs of an offline bundle taking a depot from versions `olds` (its generation A) to the new
 * versions `news` (of generation B, not in A): every chunk of the new versions that A lacks, paired
 * where it replaces chunks of A, ordered by target id. The master writes records in this order and the
 * importing depot computes the same list from the same manifests.
 */
export function bundleDeltaPairs(
  oldVersions: readonly PairingVersion[],
  newVersions: readonly PairingVersion[],
): BundlePair[] {
  const memo = (v: PairingVersion): PairingVersion => {
    let m: Manifest | undefined | null = null;
    return { ...v, load: () => (m === null ? (m = v.load()) : m) };
  };
  const olds = oldVersions.map(memo);
  const news = newVersions.map(memo);
  const had = new Set<string>();
  for (const o of olds) for (const f of o.load()?.files ?? []) for (const c of f.chunks) had.add(c.id);
  const lengths = new Map<string, number>();
  for (const n of news)
    for (const f of n.load()?.files ?? [])
      for (const c of f.chunks) if (!had.has(c.id)) lengths.set(c.id, c.length);
  const bases = pairChunkBases(news, olds, new Set(lengths.keys()));
  return [...bases]
    .map(([target, b]) => ({ target, length: lengths.get(target)!, ...b }))
    .sort((x, y) => (x.target < y.target ? -1 : x.target > y.target ? 1 : 0));
}
