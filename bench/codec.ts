/**
 * Which codec for compressed content and deltas, measured on consecutive real releases from the npm
 * registry (bench/lib/npm-releases.ts; the same pairs as bench/real-delta.ts):
 *  1. per chunk (the store's FastCDC chunks, 16-256 KiB, average 64 KiB, of the new release's files; an
 *     even sample of at most BENCH_SAMPLE_MIB per pair): zstd (src/compress/zstd.ts) at levels 3/9/19
 *     and Node's built-in brotli at qualities 4/9/11: compressed bytes, compress and decompress MB/s of
 *     CPU time on one core;
 *  2. per file (whole files of the new release): the same codecs (level 19 and quality 9 only where the
 *     release is below BENCH_SLOW_MIB, as they run at 1-3 MB/s; quality 11, 0.4 MB/s, only per chunk);
 *  3. deltas per file (each file against the same path in the old release): zstd with the old file as
 *     the reference (`delta()`, what `zstd --patch-from` does) at levels 3/9/12/19, against `xdelta3 -e -s`;
 *  4. deltas per chunk: each sampled chunk of the new release that the old release lacks, encoded
 *     against a 1 MiB window of the old file around the same relative position, at levels 3 and 19,
 *     next to the same chunks compressed alone.
 *
 *   npx tsc -p tsconfig.json && bash scripts/bench-deps.sh && node dist/bench/codec.js
 * Knobs: BENCH_PAIRS=esbuild,typescript, BENCH_SAMPLE_MIB (default 4), BENCH_SLOW_MIB (default 12).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, brotliDecompressSync, constants as zc } from 'node:zlib';
import { Chunker } from '../src/chunk/fastcdc.js';
import { applyDelta, compress, decompress, delta, ZSTD_VERSION } from '../src/compress/zstd.js';
import { blake3Hex } from '../src/hash/blake3.js';
import { benchTmp, listFiles, RELEASE_PAIRS, unpackRelease } from './lib/npm-releases.js';

const SAMPLE = Number(process.env.BENCH_SAMPLE_MIB ?? 4) * 1024 * 1024;
const SLOW = Number(process.env.BENCH_SLOW_MIB ?? 12) * 1024 * 1024;
const WINDOW = 1024 * 1024;

interface Codec {
  name: string;
  slow: boolean;
  enc(b: Uint8Array): Uint8Array;
  dec(b: Uint8Array, n: number): Uint8Array;
}
const CODECS: Codec[] = [
  ...[3, 9, 19].map((l) => ({
    name: `zstd -${l}`,
    slow: l >= 19,
    enc: (b: Uint8Array) => compress(b, l),
    dec: (b: Uint8Array, n: number) => decompress(b, { maxBytes: n, exact: true }),
  })),
  ...[4, 9, 11].map((q) => ({
    name: `brotli q${q}`,
    slow: q >= 9,
    enc: (b: Uint8Array) =>
      brotliCompressSync(b, {
        params: { [zc.BROTLI_PARAM_QUALITY]: q, [zc.BROTLI_PARAM_SIZE_HINT]: b.length },
      }),
    dec: (b: Uint8Array, n: number) => brotliDecompressSync(b, { maxOutputLength: Math.max(1, n) }),
  })),
];

function cpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

interface Tally {
  plain: number;
  packed: number;
  encS: number;
  decS: number;
  skipped?: boolean;
}
const tally = (): Tally => ({ plain: 0, packed: 0, encS: 0, decS: 0 });

function measure(codec: Codec, pieces: Uint8Array[], t: Tally): void {
  for (const p of pieces) {
    let c0 = cpu();
    const packed = codec.enc(p);
    t.encS += cpu() - c0;
    c0 = cpu();
    const back = codec.dec(packed, p.length);
    t.decS += cpu() - c0;
    if (back.length !== p.length) throw new Error(`${codec.name}: round trip lost bytes`);
    t.plain += p.length;
    t.packed += packed.length;
  }
}

function chunksOf(data: Uint8Array): Uint8Array[] {
  const c = new Chunker();
  return [...c.push(data), ...c.finish()];
}

/** Every k-th piece so that the sample stays within `limit` bytes. */
function sample<T extends { bytes: Uint8Array }>(items: T[], limit: number): T[] {
  const total = items.reduce((n, i) => n + i.bytes.length, 0);
  const k = Math.max(1, Math.ceil(total / limit));
  return items.filter((_, i) => i % k === 0);
}

function main(): void {
  const words = (process.env.BENCH_PAIRS ?? '')
    .split(',')
    .map((w) => w.trim().toLowerCase())
    .filter(Boolean);
  const pairs = RELEASE_PAIRS.filter(
    (p) => !words.length || words.some((w) => p.label.toLowerCase().includes(w)),
  );
  const x = join(benchTmp(), 'codec');
  mkdirSync(x, { recursive: true });
  const perChunk = new Map<string, Tally>(CODECS.map((c) => [c.name, tally()]));
  const lines: string[] = [];
  const fileRows: string[] = [];
  const deltaRows: string[] = [];
  const chunkDeltaRows: string[] = [];
  const t0 = performance.now();
  for (const p of pairs) {
    const oldDir = unpackRelease(p.name, p.from, x);
    const newDir = unpackRelease(p.name, p.to, x);
    const files = listFiles(newDir);
    const oldFiles = new Set(listFiles(oldDir));
    const total = files.reduce((n, f) => n + statSync(join(newDir, f)).size, 0);
    const slowOk = total <= SLOW;

    // 1. chunks of the new release, and which of them the old release already has.
    const oldIds = new Set<string>();
    for (const f of oldFiles)
      for (const c of chunksOf(readFileSync(join(oldDir, f)))) oldIds.add(blake3Hex(c));
    const all: Array<{ file: string; offset: number; bytes: Uint8Array; fileLen: number }> = [];
    for (const f of files) {
      const data = readFileSync(join(newDir, f));
      let off = 0;
      for (const c of chunksOf(data)) {
        all.push({ file: f, offset: off, bytes: c, fileLen: data.length });
        off += c.length;
      }
    }
    const sampled = sample(all, SAMPLE);
    const pieces = sampled.map((s) => s.bytes);
    for (const codec of CODECS) measure(codec, pieces, perChunk.get(codec.name)!);

    // 2. whole files.
    const fileT = new Map<string, Tally>();
    for (const codec of CODECS) {
      const t = tally();
      // Quality 11 runs at ~0.4 MB/s: whole files only through the per-chunk sample.
      if ((codec.slow && !slowOk) || codec.name === 'brotli q11') t.skipped = true;
      else for (const f of files) measure(codec, [readFileSync(join(newDir, f))], t);
      fileT.set(codec.name, t);
    }
    fileRows.push(
      `| ${p.label} ${p.to} | ${(total / 1e6).toFixed(1)} | ${CODECS.map((c) => {
        const t = fileT.get(c.name)!;
        return t.skipped
          ? '—'
          : `${(t.packed / 1e6).toFixed(2)} (${(t.plain / 1e6 / t.encS).toFixed(1)} / ${(t.plain / 1e6 / t.decS).toFixed(0)})`;
      }).join(' | ')} |`,
    );

    // 3. deltas per file against the same path in the old release (new files: compressed alone).
    const levels = slowOk ? [3, 9, 12, 19] : [3, 9, 12];
    const d = new Map<number, { bytes: number; encS: number; decS: number }>(
      levels.map((l) => [l, { bytes: 0, encS: 0, decS: 0 }]),
    );
    let xd = 0;
    let xdS = 0;
    const tmp = join(x, 'xd');
    mkdirSync(tmp, { recursive: true });
    for (const f of files) {
      const target = readFileSync(join(newDir, f));
      const base = oldFiles.has(f) ? readFileSync(join(oldDir, f)) : Buffer.alloc(0);
      for (const l of levels) {
        const r = d.get(l)!;
        let c0 = cpu();
        const enc = delta(base, target, l);
        r.encS += cpu() - c0;
        c0 = cpu();
        const back = applyDelta(base, enc, { maxBytes: target.length, exact: true });
        r.decS += cpu() - c0;
        if (!back.equals(target)) throw new Error(`delta of ${f} did not rebuild it`);
        r.bytes += enc.length;
      }
      const srcPath = oldFiles.has(f) ? join(oldDir, f) : join(tmp, 'empty');
      if (!oldFiles.has(f)) writeFileSync(srcPath, '');
      const w0 = performance.now();
      execFileSync('xdelta3', ['-e', '-f', '-s', srcPath, join(newDir, f), join(tmp, 'out.vcdiff')]);
      xdS += (performance.now() - w0) / 1000;
      xd += statSync(join(tmp, 'out.vcdiff')).size;
    }
    rmSync(tmp, { recursive: true, force: true });
    const dl = (l: number) => {
      const r = d.get(l);
      return r
        ? `${(r.bytes / 1e3).toFixed(0)} (${(total / 1e6 / r.encS).toFixed(1)} / ${(total / 1e6 / r.decS).toFixed(0)})`
        : '—';
    };
    deltaRows.push(
      `| ${p.label} ${p.from} → ${p.to} | ${dl(3)} | ${dl(9)} | ${dl(12)} | ${dl(19)} | ${(xd / 1e3).toFixed(0)} (${(total / 1e6 / xdS).toFixed(1)} wall) |`,
    );

    // 4. the sampled chunks the old release lacks: alone, or against a window of the old file.
    const fresh = sampled.filter((s) => !oldIds.has(blake3Hex(s.bytes)));
    const freshBytes = fresh.reduce((n, s) => n + s.bytes.length, 0);
    const cd = { alone3: 0, win3: 0, win19: 0 };
    const oldCache = new Map<string, Buffer>();
    for (const s of fresh) {
      cd.alone3 += compress(s.bytes, 3).length;
      let base: Uint8Array = Buffer.alloc(0);
      if (oldFiles.has(s.file)) {
        const old = oldCache.get(s.file) ?? readFileSync(join(oldDir, s.file));
        oldCache.set(s.file, old);
        const centre = Math.round((s.offset / Math.max(1, s.fileLen)) * old.length);
        const start = Math.max(0, Math.min(old.length - WINDOW, centre - WINDOW / 2));
        base = old.subarray(Math.max(0, start), Math.max(0, start) + WINDOW);
      }
      cd.win3 += delta(base, s.bytes, 3).length;
      cd.win19 += delta(base, s.bytes, 19).length;
    }
    chunkDeltaRows.push(
      `| ${p.label} | ${sampled.length} / ${all.length} | ${fresh.length} (${(freshBytes / 1e3).toFixed(0)} kB) | ${(cd.alone3 / 1e3).toFixed(0)} | ${(cd.win3 / 1e3).toFixed(0)} | ${(cd.win19 / 1e3).toFixed(0)} |`,
    );
    // Each pair's rows as soon as they exist: a run stopped early keeps what it measured.
    console.error(`${p.label}: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    for (const rows of [fileRows, deltaRows, chunkDeltaRows]) console.error(rows[rows.length - 1]);
    for (const c of CODECS) {
      const t = perChunk.get(c.name)!;
      console.error(
        `  chunks so far, ${c.name}: ${t.plain} -> ${t.packed} B, enc ${t.encS.toFixed(2)} s, dec ${t.decS.toFixed(2)} s`,
      );
    }
  }

  lines.push(
    `\n## codec choice (node ${process.version}, libzstd ${ZSTD_VERSION}; MB = 10^6 B; speeds are MB of plain bytes per CPU-second, one core)\n`,
  );
  lines.push(
    `### per chunk (FastCDC 16/64/256 KiB, sample of ≤ ${SAMPLE / 1048576} MiB per pair, all pairs together)\n`,
  );
  lines.push('| codec | plain MB | compressed MB | ratio | compress MB/s | decompress MB/s |');
  lines.push('|---|---:|---:|---:|---:|---:|');
  for (const c of CODECS) {
    const t = perChunk.get(c.name)!;
    lines.push(
      `| ${c.name} | ${(t.plain / 1e6).toFixed(1)} | ${(t.packed / 1e6).toFixed(2)} | ${(t.plain / t.packed).toFixed(2)} | ${(t.plain / 1e6 / t.encS).toFixed(1)} | ${(t.plain / 1e6 / t.decS).toFixed(0)} |`,
    );
  }
  lines.push('\n### per file: compressed MB (compress / decompress MB/s)\n');
  lines.push(`| release | MB | ${CODECS.map((c) => c.name).join(' | ')} |`);
  lines.push(`|---|---:|${CODECS.map(() => '---:').join('|')}|`);
  lines.push(...fileRows);
  lines.push(
    '\n### delta per file against the same path in the old release: kB (encode / apply MB/s of the new release)\n',
  );
  lines.push(
    '| pair | zstd -3 | zstd -9 | zstd -12 | zstd -19 | xdelta3 -e -s (MB/s wall, process start included) |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|');
  lines.push(...deltaRows);
  lines.push('\n### delta per chunk: sampled chunks the old release lacks, kB\n');
  lines.push(
    '| pair | chunks sampled / all | not in the old release | zstd -3 alone | zstd -3 vs 1 MiB of the old file | zstd -19 vs 1 MiB |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|');
  lines.push(...chunkDeltaRows);
  console.log(lines.join('\n'));
  console.error(`total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

main();
