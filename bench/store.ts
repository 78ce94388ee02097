/**
 * Chunk store layout benchmark: (a) one file per chunk, sharded `ab/cd/<id>`, batched durable writes
 * (write every tmp file, fsync each, rename each, fsync each touched folder), against (b) the pack
 * store (src/store/chunk-store.ts: append to a pack, one fdatasync, one SQLite commit per batch).
 * Both store 4 KiB chunks, durably, then check existence of every stored id and as many absent ids,
 * then read random chunks back; disk use is `du` of each layout's folder.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/store.js
 *   BENCH_CHUNKS (default 1,000,000) chunks for the pack store; BENCH_FILE_CHUNKS (default
 *   min(BENCH_CHUNKS, 200,000)) for the file-per-chunk layout, which needs one fsync per chunk;
 *   BENCH_DIR (default the OS temp folder) for the scratch data, deleted afterwards.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdir, open, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blake3Hex } from '../src/hash/blake3.js';
import { ChunkStore, hashedChunk, type ChunkInput } from '../src/store/chunk-store.js';

const CHUNK_BYTES = 4096;
const BATCH = 4096; // chunks per durable batch: 16 MiB
const READS = 100_000;

const envInt = (name: string, dflt: number): number => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isInteger(n) || n <= 0)
    throw new Error(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
};

const packChunks = envInt('BENCH_CHUNKS', 1_000_000);
const fileChunks = envInt('BENCH_FILE_CHUNKS', Math.min(packChunks, 200_000));
const scratch = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'depotsync-bench-store-'));

/** Unique 4 KiB chunks: a slice of a random pool with a counter in front, hashed outside the timed part. */
const pool = randomBytes(64 * 1024 * 1024);
function makeBatch(first: number, n: number): ChunkInput[] {
  const out: ChunkInput[] = [];
  for (let i = first; i < first + n; i++) {
    const start = (i * 4099) % (pool.length - CHUNK_BYTES);
    const data = Buffer.from(pool.subarray(start, start + CHUNK_BYTES));
    data.writeUInt32BE(i, 0);
    out.push(hashedChunk(data));
  }
  return out;
}
function absentIds(n: number): string[] {
  return Array.from({ length: n }, (_, i) => blake3Hex(Buffer.from(`absent ${i}`)));
}
function duBytes(dir: string): number {
  return Number(execFileSync('du', ['-sk', dir]).toString().split('\t')[0]) * 1024;
}
function shuffledSample<T>(all: T[], n: number): T[] {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(all[Math.floor(Math.random() * all.length)]!);
  return out;
}

interface Row {
  layout: string;
  chunks: number;
  writeS: number;
  existsPresentS: number;
  existsAbsentS: number;
  reads: number;
  readS: number;
  diskBytes: number;
}

// ---- (a) one file per chunk ------------------------------------------------------------------

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function benchFiles(n: number): Promise<Row> {
  const root = join(scratch, 'files-v1');
  const tmp = join(root, 'tmp');
  await mkdir(tmp, { recursive: true });
  const made = new Set<string>();
  const path = (id: string): string => join(root, id.slice(0, 2), id.slice(2, 4), id);
  const ids: string[] = [];
  let writeMs = 0;
  for (let first = 0; first < n; first += BATCH) {
    const batch = makeBatch(first, Math.min(BATCH, n - first));
    const t = performance.now();
    // Write and fsync every temporary file (in parallel, as an async store would).
    await Promise.all(
      batch.map(async (c) => {
        const fh = await open(join(tmp, c.id), 'w');
        try {
          await fh.write(c.data);
          await fh.sync();
        } finally {
          await fh.close();
        }
      }),
    );
    // Rename into the shards, then make the renames durable: fsync each touched folder.
    const dirs = new Set<string>();
    for (const c of batch) {
      const d = join(root, c.id.slice(0, 2), c.id.slice(2, 4));
      if (!made.has(d)) {
        await mkdir(d, { recursive: true });
        made.add(d);
        dirs.add(join(root, c.id.slice(0, 2)));
      }
      dirs.add(d);
    }
    await Promise.all(batch.map((c) => rename(join(tmp, c.id), path(c.id))));
    await Promise.all([...dirs, root, tmp].map(fsyncPath));
    writeMs += performance.now() - t;
    for (const c of batch) ids.push(c.id);
  }
  let t = performance.now();
  let found = 0;
  for (const id of ids) if (existsSync(path(id))) found++;
  const presentMs = performance.now() - t;
  if (found !== ids.length) throw new Error(`files: ${ids.length - found} stored chunks not found`);
  const absent = absentIds(ids.length);
  t = performance.now();
  for (const id of absent) if (existsSync(path(id))) throw new Error('files: absent chunk found');
  const absentMs = performance.now() - t;
  const sample = shuffledSample(ids, Math.min(READS, ids.length));
  t = performance.now();
  for (const id of sample) {
    const fh = await open(path(id), 'r');
    await fh.readFile();
    await fh.close();
  }
  const readMs = performance.now() - t;
  const diskBytes = duBytes(root);
  rmSync(root, { recursive: true, force: true });
  return {
    layout: 'file per chunk (ab/cd/<id>, batched fsync+rename+dir fsync)',
    chunks: n,
    writeS: writeMs / 1000,
    existsPresentS: presentMs / 1000,
    existsAbsentS: absentMs / 1000,
    reads: sample.length,
    readS: readMs / 1000,
    diskBytes,
  };
}

// ---- (b) packs + SQLite index -------------------------------------------------------------------

async function benchPacks(n: number): Promise<{ row: Row; missingS: number; hasS: number }> {
  const dir = join(scratch, 'packs');
  const store = ChunkStore.open(dir, { verifyOnRead: false });
  const ids: string[] = [];
  let writeMs = 0;
  for (let first = 0; first < n; first += BATCH) {
    const batch = makeBatch(first, Math.min(BATCH, n - first));
    const t = performance.now();
    const r = await store.putMany(batch);
    writeMs += performance.now() - t;
    if (r.written !== batch.length) throw new Error('packs: batch not fully written');
    for (const c of batch) ids.push(c.id);
  }
  // Existence: missing() over every id in slices of 4096 (what a sync asks), and has() per id.
  let t = performance.now();
  for (let i = 0; i < ids.length; i += 4096)
    if (store.missing(ids.slice(i, i + 4096)).length !== 0) throw new Error('packs: stored chunk missing');
  const missingMs = performance.now() - t;
  const absent = absentIds(ids.length);
  t = performance.now();
  for (let i = 0; i < absent.length; i += 4096)
    if (store.missing(absent.slice(i, i + 4096)).length !== Math.min(4096, absent.length - i))
      throw new Error('packs: absent chunk found');
  const absentMs = performance.now() - t;
  t = performance.now();
  for (const id of ids) if (!store.has(id)) throw new Error('packs: has() false');
  const hasMs = performance.now() - t;
  const sample = shuffledSample(ids, Math.min(READS, ids.length));
  t = performance.now();
  for (const id of sample) await store.get(id, { verify: false });
  const readMs = performance.now() - t;
  await store.close();
  const diskBytes = duBytes(dir);
  rmSync(dir, { recursive: true, force: true });
  const row: Row = {
    layout: 'packs + SQLite index (chunks-v1, one fdatasync + one commit per batch)',
    chunks: n,
    writeS: writeMs / 1000,
    existsPresentS: missingMs / 1000,
    existsAbsentS: absentMs / 1000,
    reads: sample.length,
    readS: readMs / 1000,
    diskBytes,
  };
  return { row, missingS: missingMs / 1000, hasS: hasMs / 1000 };
}

// ---- report -------------------------------------------------------------------------------------

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const mib = (b: number): string => (b / 1024 / 1024).toFixed(0);

async function main(): Promise<void> {
  console.error(
    `scratch: ${scratch}; pack store ${packChunks} chunks, file per chunk ${fileChunks} chunks of ${CHUNK_BYTES} bytes`,
  );
  try {
    const packs = await benchPacks(packChunks);
    console.error('packs done');
    const files = await benchFiles(fileChunks);
    const rows = [files, packs.row];
    console.log(
      `\n### Chunk store layouts: ${CHUNK_BYTES}-byte chunks, durable batches of ${BATCH} (warm page cache for reads)\n`,
    );
    console.log(
      '| layout | chunks | write chunks/s | write MB/s | exists chunks/s (present) | exists chunks/s (absent) | random reads/s | disk used MiB | disk bytes per chunk |',
    );
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      console.log(
        `| ${r.layout} | ${fmt(r.chunks)} | ${fmt(r.chunks / r.writeS)} | ${((r.chunks * CHUNK_BYTES) / r.writeS / 1e6).toFixed(1)} | ${fmt(r.chunks / r.existsPresentS)} | ${fmt(r.chunks / r.existsAbsentS)} | ${fmt(r.reads / r.readS)} | ${mib(r.diskBytes)} | ${fmt(r.diskBytes / r.chunks)} |`,
      );
    }
    console.log(
      `\npack store has() one id at a time: ${fmt(packChunks / packs.hasS)} chunks/s; missing() in slices of 4096: ${fmt(packChunks / packs.missingS)} chunks/s`,
    );
    if (fileChunks < packChunks)
      console.log(
        `file per chunk measured at ${fmt(fileChunks)} chunks (one fsync per chunk makes ${fmt(packChunks)} take too long here)`,
      );
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
