/**
 * Master backup and restore for a large catalog: build a master with BENCH_VERSIONS published versions
 * (chunked into the store, manifests, signed metadata; BENCH_BATCH versions per generation, as one
 * publish per version would take over half an hour to build here at ~200 ms each), then time
 * `backupOpenMaster` (online copy + encryption) and `restoreMaster` (decryption, unpacking, checks and the
 * version epoch), and give the sizes. Figures go to bench/README.md (row `backup`).
 *
 *   npx tsc -p tsconfig.json && BENCH_VERSIONS=10000 node dist/bench/backup.js
 *
 * Each version is BENCH_VERSION_BYTES (default 64 KiB): half of it shared by every version of its package
 * (deduplicated in the store), half its own; 100 packages. The backup uses the real scrypt cost.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../src/log.js';
import { openMaster } from '../master/context.js';
import { initMaster } from '../master/init.js';
import { createHash } from 'node:crypto';
import { buildManifest, encodeManifest, manifestId, uniqueChunkIds } from '../src/content/manifest.js';
import { ingestFile } from '../src/store/ingest.js';
import type { MasterContext } from '../master/context.js';
import { currentGeneration } from '../master/db/catalog.js';
import { commitGeneration } from '../master/db/commit.js';
import { targetPathOf } from '../master/publish/target-path.js';
import { backupOpenMaster } from '../master/backup/run.js';
import { restoreMaster } from '../master/backup/restore.js';
import { loadRepository } from '../master/repository.js';

const VERSIONS = Number(process.env.BENCH_VERSIONS ?? 10_000);
const VERSION_BYTES = Number(process.env.BENCH_VERSION_BYTES ?? 64 * 1024);
const BATCH = Number(process.env.BENCH_BATCH ?? 100);
const PACKAGES = 100;
const PASS = 'bench passphrase for the backup';

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const mib = (b: number) => (b / 1048576).toFixed(1);
const du = (dir: string): number =>
  Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);

function bytesFor(pkg: number, version: number): Buffer {
  const b = Buffer.alloc(VERSION_BYTES);
  // xorshift: the shared half depends on the package only, the other half on the version too.
  let s = (pkg + 1) * 2654435761;
  for (let i = 0; i < VERSION_BYTES; i += 4) {
    if (i === VERSION_BYTES / 2) s = (pkg + 1) * 2654435761 + version * 40503 + 1;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    b.writeInt32LE(s | 0, i);
  }
  return b;
}

/** One generation adding `items`: content into the store, manifests, one signed metadata update. */
async function publishBatch(
  ctx: MasterContext,
  src: string,
  items: { pkg: number; i: number }[],
): Promise<void> {
  const chunker = {
    minBytes: ctx.config.chunkMinBytes,
    avgBytes: ctx.config.chunkAvgBytes,
    maxBytes: ctx.config.chunkMaxBytes,
  };
  const repo = await loadRepository(ctx);
  const manifests = [];
  const add = [];
  const changes = [];
  for (const { pkg, i } of items) {
    writeFileSync(src, bytesFor(pkg, i));
    const r = await ingestFile(ctx.store, src, { chunker });
    const name = `pkg-${pkg}`;
    const version = `1.${Math.floor(i / PACKAGES)}`;
    const manifest = buildManifest({
      name,
      version,
      chunking: chunker,
      files: [{ path: 'src.bin', mode: 0o644, size: r.size, chunks: r.chunks }],
    });
    const bytes = encodeManifest(manifest);
    const id = manifestId(bytes);
    const chunkIds = uniqueChunkIds(manifest);
    const targetPath = targetPathOf(name, version);
    manifests.push({ id, bytes, chunkIds });
    add.push({
      name,
      version,
      manifestId: id,
      targetPath,
      bin: repo.binFor(targetPath),
      totalBytes: manifest.totalBytes,
      chunkCount: chunkIds.length,
    });
    changes.push({
      path: targetPath,
      target: {
        length: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        custom: { manifestId: id, name, version, bytes: manifest.totalBytes, chunks: chunkIds.length },
      },
    });
  }
  const metadata = repo.updateTargets(changes);
  const timestamp = metadata.find((f) => f.role === 'timestamp');
  await commitGeneration(ctx.db, {
    generation: repo.generation,
    createdBy: 'bench',
    ...(timestamp ? { timestampVersion: timestamp.version } : {}),
    manifests,
    add,
    bins: metadata
      .filter((f) => f.role.startsWith('bin-'))
      .map((f) => ({ name: f.role, version: f.version })),
    metadata: metadata.map((f) => ({ role: f.role, version: f.version, bytes: f.bytes })),
  });
}

async function main(): Promise<void> {
  const log = silentLogger();
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-bench-backup-'));
  try {
    const M = join(dir, 'M');
    await initMaster(M, { log });
    const ctx = await openMaster(M, log);
    let backupFile: string;
    let backupMs: number;
    const tBuild = process.hrtime.bigint();
    try {
      const src = join(dir, 'src.bin');
      for (let start = 0; start < VERSIONS; start += BATCH) {
        const items = [];
        for (let i = start; i < Math.min(VERSIONS, start + BATCH); i++) items.push({ pkg: i % PACKAGES, i });
        await publishBatch(ctx, src, items);
        if ((start + BATCH) % 1000 === 0)
          process.stderr.write(
            `published ${start + BATCH}/${VERSIONS} (${(ms(tBuild) / 1000).toFixed(0)} s)\n`,
          );
      }
      const buildMs = ms(tBuild);
      process.stdout.write(
        `catalog: ${VERSIONS} versions, generation ${await currentGeneration(ctx.db)}, built in ${(buildMs / 1000).toFixed(0)} s\n`,
      );
      process.env.DEPOTSYNC_BACKUP_PASSPHRASE = PASS;
      const t0 = process.hrtime.bigint();
      const r = await backupOpenMaster(ctx, { actor: 'bench', dir: join(dir, 'backups') });
      backupMs = ms(t0);
      backupFile = r.file;
    } finally {
      await ctx.close();
    }
    const masterBytes = du(M);
    const dbBytes = statSync(join(M, 'master.db')).size;
    const storeBytes = du(join(M, 'store'));
    const backupBytes = statSync(backupFile).size;
    // The peer: tar of the stopped master folder (no online copy, no encryption), and its extraction
    // followed by `sync` (restore fsyncs what it wrote).
    const tar = join(dir, 'M.tar');
    const tTar = process.hrtime.bigint();
    execFileSync('tar', ['-cf', tar, '-C', dir, 'M']);
    execFileSync('sync', [tar]);
    const tarMs = ms(tTar);
    const tarBytes = statSync(tar).size;
    mkdirSync(join(dir, 'untar'));
    const tUntar = process.hrtime.bigint();
    execFileSync('tar', ['-xf', tar, '-C', join(dir, 'untar')]);
    execFileSync('sync', ['-f', join(dir, 'untar')]);
    const untarMs = ms(tUntar);
    rmSync(tar);
    rmSync(join(dir, 'untar'), { recursive: true, force: true });
    const t1 = process.hrtime.bigint();
    const restored = await restoreMaster(join(dir, 'R'), backupFile, { passphrase: PASS, log });
    const restoreMs = ms(t1);
    const check = await openMaster(join(dir, 'R'), log);
    let targets = 0;
    try {
      for (const _ of (await loadRepository(check)).targets()) targets++;
    } finally {
      await check.close();
    }
    if (targets !== VERSIONS)
      throw new Error(`restored catalog has ${targets} targets, expected ${VERSIONS}`);
    const rows = [
      [
        'master folder',
        `${mib(masterBytes)} MiB (master.db ${mib(dbBytes)} MiB, store ${mib(storeBytes)} MiB)`,
      ],
      ['backup file', `${mib(backupBytes)} MiB, ${restored.files} files`],
      ['tar -cf + sync (peer)', `${(tarMs / 1000).toFixed(1)} s, ${mib(tarBytes)} MiB`],
      ['tar -xf + sync (peer)', `${(untarMs / 1000).toFixed(1)} s`],
      ['backup time', `${(backupMs / 1000).toFixed(1)} s (${mib(backupBytes / (backupMs / 1000))} MiB/s)`],
      [
        'restore time',
        `${(restoreMs / 1000).toFixed(1)} s, generation ${restored.epoch.fromGeneration} → ${restored.epoch.generation}`,
      ],
    ];
    process.stdout.write(`\n| ${VERSIONS} versions | |\n|---|---|\n`);
    for (const [k, v] of rows) process.stdout.write(`| ${k} | ${v} |\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
