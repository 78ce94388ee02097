/**
 * The master's catalog database (master/db): cost of a durable publish commit, and speed of the
 * garbage-collection walk over live chunk ids.
 *
 * 1. Publish commits (manifest + generation + version + bin/snapshot/timestamp metadata, one
 *    transaction): ours (WAL, synchronous=FULL) against the same commit at synchronous=NORMAL, the
 *    better-sqlite3 default for a reopened WAL database (faster, but a power cut can lose the commit).
 * 2. GC walk: `liveChunkIds` (paged keyset walk) against the `sqlite3` command-line shell running the
 *    equivalent DISTINCT query over the same file.
 *
 *   npx tsc -p tsconfig.json && BENCH_CHUNK_REFS=1000000 BENCH_PUBLISHES=200 node dist/bench/catalog-db.js
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../src/log.js';
import { commitGeneration } from '../master/db/commit.js';
import { liveChunkIds } from '../master/db/live-chunks.js';
import { currentGeneration } from '../master/db/catalog.js';
import { openMasterDatabase, sqliteHandle, type MasterDb } from '../master/db/database.js';

const CHUNK_REFS = Number(process.env.BENCH_CHUNK_REFS ?? 1_000_000);
const PUBLISHES = Number(process.env.BENCH_PUBLISHES ?? 200);
const CHUNKS_PER_MANIFEST = 10_000;

const hex = (label: string): string => createHash('sha256').update(label).digest('hex');
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

async function publish(m: MasterDb, name: string, version: string, chunkIds: string[]): Promise<void> {
  const bytes = Buffer.from(JSON.stringify({ name, version, chunks: chunkIds.length, first: chunkIds[0] }));
  const id = hex(`${name}@${version}`);
  const g = (await currentGeneration(m)) + 1;
  await commitGeneration(m, {
    generation: g,
    createdBy: 'bench',
    manifests: [{ id, bytes, chunkIds }],
    add: [
      {
        name,
        version,
        manifestId: id,
        targetPath: `${name}/${version}`,
        bin: 'bin-00',
        totalBytes: chunkIds.length * 65536,
      },
    ],
    bins: [{ name: 'bin-00', version: g }],
    metadata: [
      { role: 'bin-00', version: g, bytes: Buffer.alloc(2048, 1) },
      { role: 'snapshot', version: g, bytes: Buffer.alloc(4096, 2) },
      { role: 'timestamp', version: g, bytes: Buffer.alloc(512, 3) },
    ],
  });
}

async function commits(dir: string, synchronous: 'FULL' | 'NORMAL'): Promise<number> {
  const m = openMasterDatabase(join(dir, `commit-${synchronous}.db`), { logger: silentLogger() });
  // The benchmark compares SQLite's own commit modes: it needs the SQLite handle.
  if (synchronous === 'NORMAL') sqliteHandle(m)!.pragma('synchronous = NORMAL');
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < PUBLISHES; i++) {
    await publish(
      m,
      'app',
      String(i),
      Array.from({ length: 100 }, (_, c) => hex(`${synchronous} ${i} ${c}`)),
    );
  }
  const perCommit = ms(t0) / PUBLISHES;
  await m.close();
  return perCommit;
}

async function gcWalk(
  dir: string,
): Promise<{ refs: number; live: number; oursMs: number; cliMs: number; dbBytes: number }> {
  const path = join(dir, 'gc.db');
  const m = openMasterDatabase(path, { logger: silentLogger() });
  const manifests = Math.max(2, Math.round(CHUNK_REFS / CHUNKS_PER_MANIFEST));
  // Each version shares half of its chunks with the previous one (a typical update).
  for (let v = 0; v < manifests; v++) {
    const base = v * (CHUNKS_PER_MANIFEST / 2);
    await publish(
      m,
      'big',
      String(v),
      Array.from({ length: CHUNKS_PER_MANIFEST }, (_, c) => hex(`chunk ${base + c}`)),
    );
  }
  // Unpublish every other version.
  for (let v = 0; v < manifests; v += 2) {
    await commitGeneration(m, { createdBy: 'bench', remove: [{ name: 'big', version: String(v) }] });
  }
  sqliteHandle(m)!.pragma('wal_checkpoint(TRUNCATE)');
  let t0 = process.hrtime.bigint();
  let live = 0;
  for await (const _ of liveChunkIds(m)) live++;
  const oursMs = ms(t0);
  await m.close();
  const sql = `SELECT DISTINCT hex(r.chunk_id) FROM chunk_refs r WHERE EXISTS (SELECT 1 FROM manifests mf JOIN package_versions v
    ON v.manifest_id = mf.id WHERE mf.seq = r.manifest_seq AND v.removed_generation IS NULL) ORDER BY r.chunk_id;`;
  t0 = process.hrtime.bigint();
  const out = execFileSync('sqlite3', ['-readonly', path, sql], { maxBuffer: 1024 * 1024 * 1024 });
  const cliMs = ms(t0);
  const cliLive = out.toString().split('\n').filter(Boolean).length;
  if (cliLive !== live) throw new Error(`walk mismatch: ours ${live}, sqlite3 ${cliLive}`);
  return { refs: manifests * CHUNKS_PER_MANIFEST, live, oursMs, cliMs, dbBytes: statSync(path).size };
}

const dir = mkdtempSync(join(tmpdir(), 'depotsync-bench-db-'));
try {
  const full = await commits(dir, 'FULL');
  const normal = await commits(dir, 'NORMAL');
  const gc = await gcWalk(dir);
  const sqliteVersion = execFileSync('sqlite3', ['--version']).toString().split(' ')[0];
  console.log(
    `\n### master catalog database (${PUBLISHES} publishes of 100 chunks; ${gc.refs} chunk refs)\n`,
  );
  console.log('| measurement | depotsync | peer | peer tool |');
  console.log('|---|---|---|---|');
  console.log(
    `| publish commit, ms each | ${full.toFixed(2)} (synchronous=FULL) | ${normal.toFixed(2)} | same commit at synchronous=NORMAL (better-sqlite3 reopen default) |`,
  );
  console.log(
    `| GC walk of ${gc.live} live chunk ids, ms | ${gc.oursMs.toFixed(0)} (liveChunkIds, paged) | ${gc.cliMs.toFixed(0)} | sqlite3 ${sqliteVersion} shell, same query |`,
  );
  console.log(
    `| live ids per second | ${Math.round(gc.live / (gc.oursMs / 1000))} | ${Math.round(gc.live / (gc.cliMs / 1000))} | |`,
  );
  console.log(`| database bytes per chunk ref | ${(gc.dbBytes / gc.refs).toFixed(1)} | | |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
