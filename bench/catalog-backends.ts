/**
 * The master's catalog on SQLite against PostgreSQL, on the same machine, in one process:
 *  1. publish of a small package (BENCH_PUBLISH_BYTES, default 256 KiB of new content each time) through
 *     the real `publish` function, in process: ingest, catalog commit, signing (goal: PostgreSQL within
 *     2 × SQLite);
 *  2. filing one status report (`recordDepotStatus`, what the report handler commits);
 *  3. `GET /v1/admin/status` over a real HTTPS master (`startMasterServer`, bearer token, keep-alive
 *     connection) with BENCH_DEPOTS depots (default 1,000, BENCH_REPORTS reports of history each, default
 *     60) and BENCH_VERSIONS live versions (default 10,000), seeded as bench/admin-status.ts does
 *     (goal: < 100 ms).
 * PostgreSQL is a throw-away cluster (test/helpers/postgres.ts) switched back to production durability
 * (fsync, synchronous_commit and full_page_writes on, shared_buffers 128 MB). Each master is made by
 * `master init` on SQLite; the PostgreSQL ones are moved there by `migrateBackend` (`master migrate`).
 * Runs alternate between the backends so the drift of a shared machine hits both; min/median/max of
 * BENCH_RUNS runs (default 7) after one warm-up.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/catalog-backends.js
 */
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPostgresSql } from '../src/db/postgres-sql.js';
import { silentLogger } from '../src/log.js';
import { openMaster, type MasterContext } from '../master/context.js';
import { masterDbOver, type MasterDb } from '../master/db/database.js';
import { migrateBackend } from '../master/db/migrate-backend.js';
import { addOperator } from '../master/db/operators.js';
import { recordDepotStatus } from '../master/db/status.js';
import { initMaster } from '../master/init.js';
import { publish } from '../master/publish/publish.js';
import { startMasterServer, type MasterServer } from '../master/server/serve.js';
import { startPostgres, type PgCluster } from '../test/helpers/postgres.js';
import { seedFleet } from './lib/fleet-seed.js';

const DEPOTS = Number(process.env.BENCH_DEPOTS ?? 1000);
const VERSIONS = Number(process.env.BENCH_VERSIONS ?? 10_000);
const REPORTS = Number(process.env.BENCH_REPORTS ?? 60);
const RUNS = Math.max(5, Number(process.env.BENCH_RUNS ?? 7));
const PUBLISH_BYTES = Number(process.env.BENCH_PUBLISH_BYTES ?? 256 * 1024);

type Backend = 'sqlite' | 'postgres';
const BACKENDS: Backend[] = ['sqlite', 'postgres'];
const log = silentLogger();

/** A master made by `master init` (SQLite), moved to its own PostgreSQL database for `postgres`. */
async function master(
  root: string,
  name: string,
  backend: Backend,
  cluster: PgCluster,
): Promise<MasterContext> {
  const dir = join(root, `${name}-${backend}`);
  await initMaster(dir, { log, config: { statusReportsPerMachinePerMinute: 100_000 } });
  const ctx = await openMaster(dir, log);
  if (backend === 'sqlite') return ctx;
  // openMaster opens the folder's SQLite catalog; the benchmark swaps in the migrated PostgreSQL one.
  await ctx.db.close();
  const url = await cluster.createDatabase(name);
  await migrateBackend(dir, url, { logger: log });
  const db: MasterDb = masterDbOver(await openPostgresSql(url, { logger: log }), {
    logger: log,
    file: ctx.layout.database,
  });
  return { ...ctx, db, close: async () => (await ctx.store.close(), await db.close()) };
}

/** Production durability on the throw-away cluster (it starts with fsync off for tests). */
async function durable(cluster: PgCluster): Promise<void> {
  for (const s of [
    'fsync = on',
    'synchronous_commit = on',
    'full_page_writes = on',
    "shared_buffers = '128MB'",
  ])
    await cluster.query(`ALTER SYSTEM SET ${s}`);
  await cluster.restart();
  const r = await cluster.query(
    "SELECT current_setting('fsync') AS f, current_setting('synchronous_commit') AS s",
  );
  const row = r.rows[0] as { f: string; s: string };
  if (row.f !== 'on' || row.s !== 'on')
    throw new Error(`PostgreSQL durability not on: ${JSON.stringify(row)}`);
}

function getJson(url: string, token: string, agent: https.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
        let n = 0;
        res.on('data', (d: Buffer) => (n += d.length));
        res.on('end', () =>
          res.statusCode === 200 ? resolve(n) : reject(new Error(`${url}: ${res.statusCode}`)),
        );
      })
      .on('error', reject);
  });
}

interface Fleet {
  ctx: MasterContext;
  server: MasterServer;
  token: string;
  agent: https.Agent;
  seq: number;
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'depotsync-bench-backends-'));
  const cluster = await startPostgres();
  const opened: MasterContext[] = [];
  const servers: MasterServer[] = [];
  try {
    await durable(cluster);
    const pub = {} as Record<Backend, MasterContext>;
    const fleet = {} as Record<Backend, Fleet>;
    const nowMs = Date.now();
    for (const b of BACKENDS) {
      pub[b] = await master(root, 'publish', b, cluster);
      opened.push(pub[b]);
      const ctx = await master(root, 'fleet', b, cluster);
      opened.push(ctx);
      const t0 = performance.now();
      await seedFleet(ctx.db, nowMs, { depots: DEPOTS, versions: VERSIONS, reports: REPORTS });
      // Statistics as autovacuum would have gathered them on a server that has been up: plans change with them.
      if (b === 'postgres') await ctx.db.sql.exec('ANALYZE');
      process.stdout.write(
        `${b}: seeded ${DEPOTS} depots × ${REPORTS} reports and ${VERSIONS} versions in ${Math.round(performance.now() - t0)} ms\n`,
      );
      const server = await startMasterServer(ctx, {
        host: '127.0.0.1',
        port: 0,
        dropbox: false,
        refresher: false,
      });
      servers.push(server);
      const { token } = await addOperator(ctx.db, { name: 'bench', role: 'admin', createdBy: 'bench' });
      // Keep-alive: the time of the answer, not of a TLS handshake per request.
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
      fleet[b] = { ctx, server, token, agent, seq: REPORTS + 1 };
    }

    const ops: { what: string; goal: string; run: (b: Backend, i: number) => Promise<unknown> }[] = [
      {
        what: `publish ${PUBLISH_BYTES / 1024} KiB (publish())`,
        goal: 'PostgreSQL ≤ 2 × SQLite',
        run: async (b, i) => {
          const file = join(root, `pkg-${b}-${i}.bin`);
          writeFileSync(file, randomBytes(PUBLISH_BYTES));
          await publish(pub[b], { name: 'small', version: `1.0.${i}`, path: file, actor: 'bench' });
        },
      },
      {
        what: 'file one status report (recordDepotStatus)',
        goal: '',
        run: (b) =>
          recordDepotStatus(fleet[b].ctx.db, 'depot-00001', {
            servedGeneration: VERSIONS + 1,
            targetGeneration: VERSIONS + 1,
            bytesFetched: 0,
            chunksFetched: 0,
            reportedAt: new Date().toISOString(),
            sequence: fleet[b].seq++,
          }),
      },
      {
        what: `GET /v1/admin/status over HTTPS (${DEPOTS} depots, ${VERSIONS} versions)`,
        goal: '< 100 ms',
        run: (b) => getJson(`${fleet[b].server.url}/v1/admin/status`, fleet[b].token, fleet[b].agent),
      },
      {
        what: 'GET /v1/admin/status?packages=none over HTTPS',
        goal: '< 100 ms',
        run: (b) =>
          getJson(`${fleet[b].server.url}/v1/admin/status?packages=none`, fleet[b].token, fleet[b].agent),
      },
    ];
    const rows: string[] = [];
    for (const op of ops) {
      const t: Record<Backend, number[]> = { sqlite: [], postgres: [] };
      for (let i = 0; i <= RUNS; i++) {
        for (const b of i % 2 ? BACKENDS : [...BACKENDS].reverse()) {
          const t0 = performance.now();
          await op.run(b, i);
          if (i > 0) t[b].push(performance.now() - t0); // run 0 is the warm-up
        }
      }
      const s = (b: Backend) => spread(t[b]);
      const ratio = s('postgres').median / s('sqlite').median;
      rows.push(
        `| ${op.what} | ${fmt(s('sqlite'))} | ${fmt(s('postgres'))} | ${ratio.toFixed(2)} | ${op.goal} |`,
      );
    }
    process.stdout.write(
      `\nSQLite against PostgreSQL ${(await cluster.query('SHOW server_version')).rows[0]?.server_version} (fsync on), ${RUNS} alternating runs after one warm-up, ms min / median / max; load average ${load()}:\n\n`,
    );
    process.stdout.write(
      '| operation | SQLite ms | PostgreSQL ms | PG / SQLite (median) | goal |\n|---|---:|---:|---:|---|\n',
    );
    process.stdout.write(rows.join('\n') + '\n');
    for (const b of BACKENDS) fleet[b].agent.destroy();
  } finally {
    for (const s of servers) await s.close().catch(() => undefined);
    for (const c of opened) await c.close().catch(() => undefined);
    await cluster.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

function spread(a: number[]): { min: number; median: number; max: number } {
  const s = [...a].sort((x, y) => x - y);
  return { min: s[0]!, median: s[Math.floor(s.length / 2)]!, max: s[s.length - 1]! };
}

function fmt(s: { min: number; median: number; max: number }): string {
  const f = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
  return `${f(s.min)} / **${f(s.median)}** / ${f(s.max)}`;
}

function load(): string {
  return loadavg()
    .map((x) => x.toFixed(1))
    .join(', ');
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
