/**
 * Content model costs for a package of BENCH_CHUNKS chunks (default 16,384: a 1 GiB package at 64 KiB):
 * 1. the hash tree root: depotsync (BLAKE3 in JS for the tiny tree inputs) vs the same tree through the
 *    native BLAKE3 addon call by call vs Certificate Transparency's RFC 6962 tree (SHA-256, node:crypto);
 * 2. the manifest: its size against a plain JSON design (an array of {id: hex, length} per file), and
 *    decoding it at the border (strict parser, every field check, tree recomputed, canonical check)
 *    against JSON.parse alone on the same bytes.
 *
 *   npx tsc -p tsconfig.json && BENCH_CHUNKS=16384 node dist/bench/content.js
 */
import { createHash, randomBytes } from 'node:crypto';
import { parseStrictJson } from '../src/content/canonical-json.js';
import { treeRoot } from '../src/content/hash-tree.js';
import { buildManifest, decodeManifest, encodeManifest } from '../src/content/manifest.js';
import { blake3 } from '../src/hash/blake3.js';

const CHUNKS = Number(process.env.BENCH_CHUNKS ?? 16_384);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

function bestMs(f: () => unknown): number {
  f(); // warm-up
  let best = Infinity;
  for (let r = 0; r < RUNS; r++) {
    const t = process.hrtime.bigint();
    f();
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e6);
  }
  return best;
}

/** RFC 6962 tree with a per-call hash function, level by level (same shape as depotsync's). */
function treeWith(ids: Buffer[], h: (data: Buffer) => Buffer): Buffer {
  let level = ids.map((id) => h(Buffer.concat([Buffer.of(0), id])));
  while (level.length > 1) {
    const up: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2)
      up.push(h(Buffer.concat([Buffer.of(1), level[i] as Buffer, level[i + 1] as Buffer])));
    if (level.length % 2 === 1) up.push(level[level.length - 1] as Buffer);
    level = up;
  }
  return level[0] as Buffer;
}

function main(): void {
  const ids = Array.from({ length: CHUNKS }, () => randomBytes(32));
  const concatenated = Buffer.concat(ids);
  const hashes = 2 * CHUNKS - 1;
  const sha256 = (d: Buffer): Buffer => createHash('sha256').update(d).digest();
  if (!treeWith(ids, blake3).equals(treeRoot(concatenated))) throw new Error('tree roots disagree');

  const rows = [
    ['depotsync treeRoot (BLAKE3, JS for 33/65-byte inputs)', bestMs(() => treeRoot(concatenated))],
    ['same tree, native BLAKE3 addon per call', bestMs(() => treeWith(ids, blake3))],
    ['RFC 6962 / Certificate Transparency (SHA-256, node:crypto)', bestMs(() => treeWith(ids, sha256))],
  ] as const;
  console.log(`\n### Hash tree over ${CHUNKS} chunk ids (${hashes} hashes), best of ${RUNS}\n`);
  console.log('| implementation | ms | µs per hash |');
  console.log('|---|---:|---:|');
  for (const [name, ms] of rows)
    console.log(`| ${name} | ${ms.toFixed(1)} | ${((ms * 1000) / hashes).toFixed(2)} |`);

  const chunks = ids.map((id) => ({ id: id.toString('hex'), length: 65_536 }));
  const m = buildManifest({
    name: 'bench',
    version: '1',
    chunking: { minBytes: 16_384, avgBytes: 65_536, maxBytes: 262_144 },
    files: [{ path: 'package.bin', mode: 0o644, size: CHUNKS * 65_536, chunks }],
  });
  const bytes = encodeManifest(m);
  const plain = Buffer.from(
    JSON.stringify({ ...m, files: m.files.map((f) => ({ ...f, chunks: f.chunks })) }),
  );
  console.log(`\n### Manifest of one file of ${CHUNKS} chunks, best of ${RUNS}\n`);
  console.log('| design / step | bytes | ms |');
  console.log('|---|---:|---:|');
  console.log(
    `| depotsync: base64 of 36-byte records, encodeManifest | ${bytes.length} | ${bestMs(() => encodeManifest(m)).toFixed(1)} |`,
  );
  console.log(
    `| plain JSON: [{id: hex, length}], JSON.stringify | ${plain.length} | ${bestMs(() => JSON.stringify(m)).toFixed(1)} |`,
  );
  console.log(
    `| depotsync decodeManifest (strict parse, all checks, tree, canonical) | ${bytes.length} | ${bestMs(() => decodeManifest(bytes)).toFixed(1)} |`,
  );
  console.log(
    `| depotsync parseStrictJson alone | ${bytes.length} | ${bestMs(() => parseStrictJson(bytes, { maxBytes: bytes.length, what: 'm' })).toFixed(1)} |`,
  );
  console.log(
    `| JSON.parse (Node built-in, no checks) on the same bytes | ${bytes.length} | ${bestMs(() => JSON.parse(bytes.toString('utf8'))).toFixed(1)} |`,
  );
  console.log(
    `| parseStrictJson on the plain JSON design | ${plain.length} | ${bestMs(() => parseStrictJson(plain, { maxBytes: plain.length, what: 'm' })).toFixed(1)} |`,
  );
  console.log(
    `| JSON.parse on the plain JSON design | ${plain.length} | ${bestMs(() => JSON.parse(plain.toString('utf8'))).toFixed(1)} |`,
  );
}

main();
