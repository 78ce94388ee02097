/**
 * Master publish benchmarks:
 *  1. publish a new BENCH_BYTES installer (default 1 GiB), then the same installer with 100 scattered
 *     4 KiB changes: wall time and new chunks stored for each (peer: `cp FILE NEW && sync`, the cost of
 *     just writing the bytes durably);
 *  2. a catalog of BENCH_PACKAGES packages (default 10,000; made in one bulk generation): time to publish
 *     one more small package beyond its ingest (goal < 200 ms: re-signing must not be O(catalog)), and the
 *     metadata bytes a client needs to learn of that change: timestamp + snapshot + one bin (goal < 64 KiB).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/master-publish.js
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoBytes } from '../cli/demo/demo.js';
import { silentLogger } from '../src/log.js';
import { openMaster } from '../master/context.js';
import { initMaster } from '../master/init.js';
import { publish } from '../master/publish/publish.js';
import { commitGeneration } from '../master/db/commit.js';
import { latestMetadata } from '../master/db/metadata.js';
import { loadRepository } from '../master/repository.js';
import { targetPathOf } from '../master/publish/target-path.js';

const BYTES = Number(process.env.BENCH_BYTES ?? 1024 * 1024 * 1024);
const PACKAGES = Number(process.env.BENCH_PACKAGES ?? 10_000);

const ms = (t0: number) => performance.now() - t0;

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'depotsync-bench-master-'));
  try {
    await initMaster(join(root, 'M'), { log: silentLogger() });
    const ctx = await openMaster(join(root, 'M'), silentLogger());

    // 1. A big installer, then 100 scattered 4 KiB edits.
    const data = demoBytes(BYTES, 42);
    const f1 = join(root, 'setup-1.bin');
    writeFileSync(f1, data);
    const stride = Math.floor(BYTES / 101);
    for (let k = 1; k <= 100; k++)
      for (let i = 0; i < 4096; i++) data[k * stride + i] = data[k * stride + i]! ^ 0x5a;
    const f2 = join(root, 'setup-2.bin');
    writeFileSync(f2, data);
    execFileSync('sync');
    let t0 = performance.now();
    execFileSync('sh', ['-c', `cp ${f1} ${root}/copy.bin && sync ${root}/copy.bin`]);
    const cpMs = ms(t0);
    rmSync(join(root, 'copy.bin'));
    t0 = performance.now();
    const p1 = await publish(ctx, { name: 'setup', version: '1', path: f1, actor: 'bench' });
    const p1Ms = ms(t0);
    t0 = performance.now();
    const p2 = await publish(ctx, { name: 'setup', version: '2', path: f2, actor: 'bench' });
    const p2Ms = ms(t0);
    const mib = BYTES / 1024 / 1024;
    console.log(`### publish of a ${mib} MiB installer\n`);
    console.log('| case | wall s | MiB/s | chunks | new chunks | new bytes |');
    console.log('|---|---:|---:|---:|---:|---:|');
    console.log(
      `| new installer | ${(p1Ms / 1000).toFixed(2)} | ${(mib / (p1Ms / 1000)).toFixed(0)} | ${p1.chunks} | ${p1.newChunks} | ${p1.newBytes} |`,
    );
    console.log(
      `| same installer + 100 scattered 4 KiB edits | ${(p2Ms / 1000).toFixed(2)} | ${(mib / (p2Ms / 1000)).toFixed(0)} | ${p2.chunks} | ${p2.newChunks} | ${p2.newBytes} |`,
    );
    console.log(
      `| peer: cp + sync of the new installer | ${(cpMs / 1000).toFixed(2)} | ${(mib / (cpMs / 1000)).toFixed(0)} | - | - | ${BYTES} |`,
    );

    // 2. A catalog of PACKAGES packages, made in one bulk generation (the manifests are tiny).
    t0 = performance.now();
    const small = join(root, 'small.bin');
    writeFileSync(small, demoBytes(4096, 7));
    const seed = await publish(ctx, { name: 'seed', version: '1', path: small, actor: 'bench' });
    const { getManifest } = await import('../master/db/manifests.js');
    const manifestBytes = (await getManifest(ctx.db, seed.id))!;
    const sha256 = createHash('sha256').update(manifestBytes).digest('hex');
    const repo2 = await loadRepository(ctx);
    const changes = [];
    const adds = [];
    for (let i = 0; i < PACKAGES; i++) {
      const name = `pkg${i}`;
      const path = targetPathOf(name, '1.0');
      changes.push({
        path,
        target: {
          length: manifestBytes.length,
          sha256,
          custom: { manifestId: seed.id, name, version: '1.0', bytes: 4096, chunks: 1 },
        },
      });
      adds.push({
        name,
        version: '1.0',
        manifestId: seed.id,
        targetPath: path,
        bin: repo2.binFor(path),
        totalBytes: 4096,
        chunkCount: 1,
      });
    }
    const files = repo2.updateTargets(changes);
    await commitGeneration(ctx.db, {
      generation: repo2.generation,
      createdBy: 'bench',
      add: adds,
      bins: files.filter((f) => f.role.startsWith('bin-')).map((f) => ({ name: f.role, version: f.version })),
      metadata: files.map((f) => ({ role: f.role, version: f.version, bytes: f.bytes })),
    });
    const buildMs = ms(t0);

    // Ingest alone (same small file under a throwaway store call) vs the whole publish of one more package.
    const runs: number[] = [];
    let last = { generation: 0 } as Awaited<ReturnType<typeof publish>>;
    for (let r = 0; r < 5; r++) {
      const one = join(root, `one-${r}.bin`);
      writeFileSync(one, demoBytes(64 * 1024, 100 + r));
      t0 = performance.now();
      last = await publish(ctx, { name: `extra${r}`, version: '1', path: one, actor: 'bench' });
      runs.push(ms(t0));
    }
    // Ingest of new content of the same size, alone: the part of a publish that is not catalog work.
    const { ingestFile } = await import('../src/store/ingest.js');
    const fresh = join(root, 'fresh.bin');
    writeFileSync(fresh, demoBytes(64 * 1024, 10));
    t0 = performance.now();
    await ingestFile(ctx.store, fresh);
    const ingestMs = ms(t0);
    runs.sort((a, b) => a - b);
    const median = runs[2]!;
    const ts = (await latestMetadata(ctx.db, 'timestamp'))!;
    const snap = (await latestMetadata(ctx.db, 'snapshot'))!;
    const binName = (await loadRepository(ctx)).binFor(targetPathOf('extra4', '1'));
    const bin = await latestMetadata(ctx.db, binName);
    const deltaBytes = ts.length + snap.length + (bin?.length ?? 0);
    console.log(
      `\n### one more package in a catalog of ${PACKAGES} (catalog built in ${(buildMs / 1000).toFixed(1)} s)\n`,
    );
    console.log('| measure | depotsync | goal |');
    console.log('|---|---:|---|');
    console.log(`| publish one 64 KiB package, median of 5 (ms) | ${median.toFixed(1)} | - |`);
    console.log(`| of which ingest (chunk+hash+durable store, ms) | ${ingestMs.toFixed(1)} | - |`);
    console.log(`| beyond the ingest (ms) | ${(median - ingestMs).toFixed(1)} | < 200 |`);
    console.log(
      `| metadata a client needs: timestamp ${ts.length} + snapshot ${snap.length} + ${binName} ${bin?.length ?? 0} (bytes) | ${deltaBytes} | < 65536 |`,
    );
    console.log(`| generation after the last publish | ${last.generation} | - |`);
    await ctx.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
