/**
 * Where a zstd chunk delta should look in the old file: the window around the same relative position
 * (what `src/content/delta-pairs.ts` pairs today) against a window chosen by content, centred on the old
 * position most 32-byte anchors of the new slice point to. Evenly spaced 64 KiB slices of biome's new
 * executable (the pair whose code moves farthest), sums of zstd frames at BENCH_LEVEL (default 19).
 *
 *   npx tsc -p tsconfig.json && BENCH_SLICES=24 node dist/bench/content-bases.js
 * Figures: bench/README.md ("Whole chunks as stored zstd frames in delta answers").
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compress, delta } from '../src/compress/zstd.js';
import { benchTmp, unpackRelease } from './lib/npm-releases.js';

const LEVEL = Number(process.env.BENCH_LEVEL ?? 19);
const SLICES = Number(process.env.BENCH_SLICES ?? 24);
const SLICE = 64 * 1024;
const WINDOW = 256 * 1024;
const ANCHOR = 32;

function anchorHash(b: Buffer, i: number): number {
  let h = 2166136261;
  for (let j = 0; j < ANCHOR; j += 4) h = Math.imul(h ^ b.readUInt32LE(i + j), 16777619);
  return h >>> 0;
}

const x = join(benchTmp(), 'x');
const oldFile = readFileSync(join(unpackRelease('@biomejs/cli-linux-x64', '2.6.8', x), 'biome'));
const newFile = readFileSync(join(unpackRelease('@biomejs/cli-linux-x64', '2.6.9', x), 'biome'));
const t0 = performance.now();
// The old file's 32-byte blocks at 32-byte steps, first position per hash.
const index = new Map<number, number>();
for (let p = 0; p + ANCHOR <= oldFile.length; p += ANCHOR) {
  const h = anchorHash(oldFile, p);
  if (!index.has(h)) index.set(h, p);
}
const indexMs = performance.now() - t0;
const sums = { positional: 0, content: 0, both: 0, wide: 0, twoPlaces: 0, alone: 0, voteMs: 0 };
const clampWindow = (lo: number) => Math.max(0, Math.min(oldFile.length - WINDOW, lo));
for (let s = 0; s < SLICES; s++) {
  const at = Math.floor(((newFile.length - SLICE) * (s + 0.5)) / SLICES);
  const slice = newFile.subarray(at, at + SLICE);
  const lo = clampWindow(Math.round((at + SLICE / 2) * (oldFile.length / newFile.length)) - WINDOW / 2);
  const tv = performance.now();
  // Every offset of the slice looked up; a verified match votes for the old start of the slice.
  const votes = new Map<number, number>();
  for (let i = 0; i + ANCHOR <= slice.length; i++) {
    const p = index.get(anchorHash(slice, i));
    if (p === undefined || oldFile.compare(slice, i, i + ANCHOR, p, p + ANCHOR) !== 0) continue;
    const start = Math.round((p - i) / 4096);
    votes.set(start, (votes.get(start) ?? 0) + 1);
  }
  let best: number | undefined;
  let bestVotes = 0;
  for (const [start, n] of votes) if (n > bestVotes) [best, bestVotes] = [start, n];
  // The runner-up at least a window away: code of the slice from a second place.
  let second: number | undefined;
  let secondVotes = 0;
  for (const [start, n] of votes)
    if (best !== undefined && Math.abs(start - best) * 4096 >= WINDOW && n > secondVotes)
      [second, secondVotes] = [start, n];
  sums.voteMs += performance.now() - tv;
  const clo = best === undefined ? lo : clampWindow(best * 4096 + SLICE / 2 - WINDOW / 2);
  const positional = delta(oldFile.subarray(lo, lo + WINDOW), slice, LEVEL).length;
  const content = clo === lo ? positional : delta(oldFile.subarray(clo, clo + WINDOW), slice, LEVEL).length;
  const both =
    clo === lo
      ? positional
      : delta(
          Buffer.concat([oldFile.subarray(lo, lo + WINDOW), oldFile.subarray(clo, clo + WINDOW)]),
          slice,
          LEVEL,
        ).length;
  const wideLo = (lo2: number) => Math.max(0, Math.min(oldFile.length - 2 * WINDOW, lo2));
  const wlo = best === undefined ? wideLo(lo - WINDOW / 2) : wideLo(best * 4096 + SLICE / 2 - WINDOW);
  sums.wide += delta(oldFile.subarray(wlo, wlo + 2 * WINDOW), slice, LEVEL).length;
  const slo =
    second === undefined || secondVotes < 16
      ? undefined
      : clampWindow(second * 4096 + SLICE / 2 - WINDOW / 2);
  sums.twoPlaces +=
    slo === undefined
      ? content
      : delta(
          Buffer.concat([oldFile.subarray(slo, slo + WINDOW), oldFile.subarray(clo, clo + WINDOW)]),
          slice,
          LEVEL,
        ).length;
  sums.positional += positional;
  sums.content += content;
  sums.both += both;
  sums.alone += compress(slice, 3).length;
}
console.log(
  JSON.stringify({
    level: LEVEL,
    slices: SLICES,
    indexMs: Math.round(indexMs),
    ...sums,
    voteMs: Math.round(sums.voteMs),
  }),
);
