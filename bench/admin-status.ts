/**
 * The admin surface at fleet scale: a master with BENCH_DEPOTS depots (default 1,000) that
 * report once a minute (BENCH_REPORTS reports of history each, default 60) and BENCH_VERSIONS live
 * package versions (default 10,000).
 *
 * 1. Server time (in-process `app.request`, no sockets) of `GET /v1/admin/status` (full and without the
 *    per-version list), the dashboard page, `/metrics`, and one status report being filed. Goal: < 100 ms.
 *    Peer: the `sqlite3` shell printing the newest report per depot as JSON (the query a hand-made
 *    status script would run), process start included.
 * 2. What one report costs the master main thread (CPU from /proc, reports alone), and the master's
 *    chunk-serving throughput over real mutual TLS, alone and while depots report at the
 *    fleet's rate (BENCH_DEPOTS per minute, from 20 depot certificates). Goal: < 5% lower.
 *
 * BENCH_STALE=1 sends every report with an old sequence number (refused as stale, nothing written): the
 * difference to a normal run is what the per-report commit (fsync) costs the serving loop.
 *
 *   npx tsc -p tsconfig.json && BENCH_DEPOTS=1000 BENCH_VERSIONS=10000 BENCH_SERVE_BYTES=67108864 node dist/bench/admin-status.js
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { silentLogger } from '../src/log.js';
import { tlsBaseOptions } from '../src/net/tls.js';
import { createMachineKeyAndCsr } from '../src/pki/csr.js';
import { adminSettings } from '../master/admin/config.js';
import { AdminService } from '../master/admin/service.js';
import { createSession } from '../master/admin/sessions.js';
import { seedFleet } from './lib/fleet-seed.js';
import { openMaster, type MasterContext } from '../master/context.js';
import { recordDepotStatus } from '../master/db/status.js';
import { requestEnrollment } from '../master/db/machines.js';
import { addOperator } from '../master/db/operators.js';
import { initMaster } from '../master/init.js';
import { approveMachine } from '../master/machines/actions.js';
import { publish } from '../master/publish/publish.js';
import { createMasterApp } from '../master/server/app.js';
import { startMasterServer } from '../master/server/serve.js';

const DEPOTS = Number(process.env.BENCH_DEPOTS ?? 1000);
const VERSIONS = Number(process.env.BENCH_VERSIONS ?? 10_000);
const REPORTS = Number(process.env.BENCH_REPORTS ?? 60);
const SERVE_BYTES = Number(process.env.BENCH_SERVE_BYTES ?? 64 * 1024 * 1024);
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
/** Depot certificates the simulated fleet's reports are spread over (each under the per-machine rate limit). */
const REPORTERS = 50;
const SERVE_RUNS = Number(process.env.BENCH_SERVE_RUNS ?? 9);
const CPU_WINDOW_MS = 10_000;

const iso = (ms: number) => new Date(ms).toISOString();

async function time(fn: () => unknown): Promise<{ median: number; p95: number }> {
  for (let i = 0; i < 3; i++) await fn();
  const t: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return {
    median: t[Math.floor(t.length / 2)]!,
    p95: t[Math.min(t.length - 1, Math.ceil(t.length * 0.95) - 1)]!,
  };
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'depotsync-bench-admin-'));
  const dir = join(tmp, 'M');
  try {
    await initMaster(dir, { log: silentLogger(), config: { statusReportsPerMachinePerMinute: 10_000 } });
    const ctx = await openMaster(dir, silentLogger());
    const nowMs = Date.now();
    const t0 = performance.now();
    await seedFleet(ctx.db, nowMs, { depots: DEPOTS, versions: VERSIONS, reports: REPORTS });
    process.stdout.write(
      `seeded ${DEPOTS} depots × ${REPORTS} reports and ${VERSIONS} versions in ${Math.round(performance.now() - t0)} ms\n`,
    );

    const admin = new AdminService({ ctx, settings: adminSettings() });
    const app = createMasterApp({ ctx, adminService: admin });
    const { token } = await addOperator(ctx.db, { name: 'bench', role: 'admin', createdBy: 'bench' });
    const { secret } = await createSession(ctx.db, 'bench', { ...admin.sessionTimes });
    const auth = { authorization: `Bearer ${token}` };
    let bytes = 0;
    const get = async (path: string, headers: Record<string, string>) => {
      const r = await app.request(path, { headers });
      if (r.status !== 200) throw new Error(`${path}: ${r.status}`);
      bytes = (await r.arrayBuffer()).byteLength;
    };
    const rows: string[][] = [];
    const add = async (what: string, fn: () => unknown, note = '') => {
      const t = await time(fn);
      rows.push([what, t.median.toFixed(1), t.p95.toFixed(1), note || `${(bytes / 1024).toFixed(0)} KiB`]);
    };
    await add(`GET /v1/admin/status (all ${VERSIONS} versions)`, () => get('/v1/admin/status', auth));
    await add('GET /v1/admin/status?packages=none', () => get('/v1/admin/status?packages=none', auth));
    await add('GET /dashboard (session)', () =>
      get('/dashboard', { cookie: `__Host-depotsync_session=${secret}` }),
    );
    await add('GET /metrics', () => get('/metrics', auth));
    let seq = REPORTS + 1;
    await add(
      'file one status report (recordDepotStatus)',
      async () =>
        await recordDepotStatus(ctx.db, 'depot-00001', {
          servedGeneration: VERSIONS + 1,
          targetGeneration: VERSIONS + 1,
          bytesFetched: 0,
          chunksFetched: 0,
          reportedAt: iso(Date.now()),
          sequence: seq++,
        }),
      '1 transaction',
    );
    const sql = `SELECT s.machine, s.served_generation, s.target_generation, s.received_at, s.last_error FROM depot_status s
      JOIN (SELECT machine, max(id) AS id FROM depot_status GROUP BY machine) l ON l.id = s.id ORDER BY s.machine`;
    await add(
      'peer: sqlite3 -json, newest report per depot',
      () =>
        execFileSync('sqlite3', ['-readonly', '-json', ctx.layout.database, sql], {
          maxBuffer: 64 * 1024 * 1024,
        }),
      'process start included; no lag, packages or alerts',
    );

    process.stdout.write(
      `Fleet: ${DEPOTS} depots, ${REPORTS} reports of history each, ${VERSIONS} live versions; ${RUNS} runs after 3 warm-ups; server time in process (goal < 100 ms).\n\n`,
    );
    process.stdout.write('| request | median ms | p95 ms | answer |\n|---|---:|---:|---|\n');
    for (const r of rows) process.stdout.write(`| ${r.join(' | ')} |\n`);
    await admin.close();

    await ctx.close();
    // A second, real master for serving: the seeded one has no signed metadata for its generations.
    const dir2 = join(tmp, 'M2');
    await initMaster(dir2, { log: silentLogger(), config: { statusReportsPerMachinePerMinute: 10_000 } });
    const ctx2 = await openMaster(dir2, silentLogger());
    await serveUnderLoad(ctx2);
    await ctx2.close();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Chunk-serving throughput over mutual TLS, with and without the fleet's report rate. */
async function serveUnderLoad(ctx: MasterContext): Promise<void> {
  const file = join(ctx.layout.dir, '..', 'serve.bin');
  const data = Buffer.alloc(SERVE_BYTES);
  for (let i = 0; i < data.length; i += 32) createHash('sha256').update(String(i)).digest().copy(data, i);
  writeFileSync(file, data);
  await publish(ctx, { name: 'big', version: '1', path: file, actor: 'bench' });
  const ids = (await ctx.db.sql.all<{ chunk_id: Buffer }>('SELECT DISTINCT chunk_id FROM chunk_refs')).map(
    (r) => r.chunk_id.toString('hex'),
  );
  const server = await startMasterServer(ctx, {
    host: '127.0.0.1',
    port: 0,
    dropbox: false,
    refresher: false,
  });
  const reporters: { name: string; key: string; cert: string; seq: number }[] = [];
  for (let i = 0; i < REPORTERS; i++) {
    const name = `reporter-${i}`;
    const { keyPem, csrPem } = createMachineKeyAndCsr({ machineName: name, role: 'depot' });
    await requestEnrollment(ctx.db, { name, role: 'depot', csrPem });
    reporters.push({
      name,
      key: keyPem,
      cert: (await approveMachine(ctx, name, { actor: 'bench' })).certPem!,
      seq: 0,
    });
  }
  // The server runs alone on this thread; the chunk client runs in a worker thread, so its TLS and
  // decoding work does not count against the server's event loop. The reporting depots run in a child
  // process at the lowest CPU priority (nice 19): on this 2-core machine their own client handshakes
  // would otherwise take CPU from the server and the fetcher, a cost real depots pay on their own
  // machines, not the master's.
  const common = { url: server.url, ca: ctx.ca.certPem, tls: tlsBaseOptions() };
  const fetcher = new Worker(FETCHER_JS, {
    eval: true,
    workerData: { ...common, cert: reporters[0]!.cert, key: reporters[0]!.key, ids },
  });
  const ask = <T>(w: Worker, msg: unknown) =>
    new Promise<T>((resolve) => {
      w.once('message', resolve);
      w.postMessage(msg);
    });
  await ask<number>(fetcher, 'fetch');
  const mainCpuMs = () => {
    const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime of this thread, in USER_HZ (100/s)
  };
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

  const modes = [
    {
      mode: 'persistent',
      what: "reports on open keep-alive connections (one per depot, as a depot's HttpClient keeps it)",
    },
    { mode: 'handshake', what: 'every report on a new connection (full mutual-TLS handshake each)' },
  ] as const;
  const cpuRows: string[] = [];
  const serveRows: string[] = [];
  const onlyModes = process.env.BENCH_REPORT_MODES?.split(',');
  for (const { mode, what } of modes.filter((m) => !onlyModes || onlyModes.includes(m.mode))) {
    const data = {
      ...common,
      mode,
      depots: DEPOTS,
      reporters: reporters.map((r) => ({ cert: r.cert, key: r.key })),
      intervalMs: 60_000 / DEPOTS,
      stale: Boolean(process.env.BENCH_STALE),
    };
    const reporter = spawn('nice', ['-n', '19', process.execPath, '-e', REPORTER_JS], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const tell = <T>(msg: unknown) =>
      new Promise<T>((resolve) => {
        reporter.once('message', (m) => resolve(m as T));
        reporter.send(msg as string);
      });
    await tell(data);
    // Persistent mode opens every depot's connection first (one report each): the steady state of a
    // fleet reporting once a minute to a master that keeps idle connections longer than that.
    await tell('warm');
    // 1. What one report costs the server's event loop: main-thread CPU over the same wall time with
    //    and without the report load, while no chunks are fetched.
    const cpuOver = async (on: boolean) => {
      const sent0 = await tell<number>(on ? 'on' : 'off');
      const c0 = mainCpuMs();
      await new Promise((r) => setTimeout(r, CPU_WINDOW_MS));
      const cpu = mainCpuMs() - c0;
      return { cpu, sent: (await tell<number>('off')) - sent0 };
    };
    const idle = await cpuOver(false);
    const busy = await cpuOver(true);
    const perReport = (busy.cpu - idle.cpu) / Math.max(1, busy.sent);
    cpuRows.push(
      `| ${what} | ${busy.sent} | ${idle.cpu.toFixed(0)} → ${busy.cpu.toFixed(0)} | ${perReport.toFixed(2)} | ${(((perReport * DEPOTS) / 60_000) * 100).toFixed(1)}% |`,
    );
    if (SERVE_RUNS === 0) {
      reporter.kill();
      continue;
    }
    // 2. Throughput: runs alternate without and with the load, so drift of a shared machine hits both.
    const alone: number[] = [];
    const loaded: number[] = [];
    const sent0 = await tell<number>('off');
    for (let i = 0; i < 2 * SERVE_RUNS; i++) {
      const on = i % 2 === 1;
      await tell(on ? 'on' : 'off');
      (on ? loaded : alone).push(await ask<number>(fetcher, 'fetch'));
    }
    const sent = (await tell<number>('off')) - sent0;
    reporter.kill();
    const [x, y] = [median(alone), median(loaded)];
    serveRows.push(
      `| ${what} | ${sent} | ${x.toFixed(0)} | ${y.toFixed(0)} | ${(((y - x) / x) * 100).toFixed(1)}% |`,
    );
  }
  await fetcher.terminate();
  await server.close();
  process.stdout.write(
    `\nStatus reports at the fleet's rate (${DEPOTS} depots, one report a minute each), master main-thread CPU over ${CPU_WINDOW_MS / 1000} s without and with reports, no chunks fetched:\n\n`,
  );
  process.stdout.write(
    '| reports | sent | main-thread CPU ms | per report ms | share of one core |\n|---|---:|---:|---:|---:|\n',
  );
  process.stdout.write(cpuRows.join('\n') + '\n');
  process.stdout.write(
    `\nChunk serving over mutual TLS (${(SERVE_BYTES / 1048576).toFixed(0)} MiB in batches of 512 chunks, median of ${SERVE_RUNS} alternating runs each; goal: < 5% lower under load):\n\n`,
  );
  process.stdout.write(
    '| reports | sent | MiB/s alone | MiB/s under reports | change |\n|---|---:|---:|---:|---:|\n',
  );
  process.stdout.write(serveRows.join('\n') + '\n');
}

/** Worker: fetch every chunk in batches of 512 over one keep-alive mutual-TLS connection; answer MiB/s. */
const FETCHER_JS = `
const { parentPort, workerData: w } = require('node:worker_threads');
const https = require('node:https');
const agent = new https.Agent({ keepAlive: true, ca: w.ca, cert: w.cert, key: w.key, ...w.tls });
const post = (body) => new Promise((resolve, reject) => {
  const req = https.request(w.url + '/v1/chunks/batch', { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
    let n = 0; res.on('data', (d) => (n += d.length)); res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error('batch ' + res.statusCode))));
  });
  req.on('error', reject); req.end(body);
});
parentPort.on('message', async () => {
  const t = performance.now(); let n = 0;
  for (let i = 0; i < w.ids.length; i += 512) n += await post(JSON.stringify({ ids: w.ids.slice(i, i + 512) }));
  parentPort.postMessage(n / 1048576 / ((performance.now() - t) / 1000));
});
`;

/**
 * Child process (nice 19): `depots` simulated depots spread over the reporter certificates; while 'on',
 * the next depot POSTs its status report every intervalMs (each depot once per depots × intervalMs).
 * mode 'persistent': one keep-alive https.Agent per depot (what a depot's long-lived HttpClient does);
 * 'handshake': a new connection and full mutual-TLS handshake for every report. 'warm' sends one report
 * from every depot (persistent mode), as fast as they are answered, 50 at a time. Every message is
 * answered with the number of reports sent so far.
 */
const REPORTER_JS = `
const https = require('node:https');
let w, depots, timer, on = false, sent = 0, next = 0;
const setup = (data) => {
w = data;
depots = Array.from({ length: w.depots }, (_, i) => {
  const r = w.reporters[i % w.reporters.length];
  const agent = w.mode === 'persistent' ? new https.Agent({ keepAlive: true, maxSockets: 1, ca: w.ca, cert: r.cert, key: r.key, ...w.tls }) : false;
  return { r, agent, seq: 0 };
});
timer = setInterval(() => {
  if (!on) return;
  sent++;
  void report(depots[next++ % depots.length]);
}, w.intervalMs);
};
const report = (d) => new Promise((resolve) => {
  const body = JSON.stringify({ servedGeneration: 1, targetGeneration: 1, bytesFetched: 0, chunksFetched: 0, reportedAt: new Date().toISOString(), sequence: w.stale ? 1 : Date.now() * 1000 + (++d.seq % 1000) });
  const req = https.request(w.url + '/v1/status', { method: 'POST', agent: d.agent, ca: w.ca, cert: d.r.cert, key: d.r.key, ...w.tls, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
    res.resume(); res.on('end', resolve);
    if (res.statusCode !== 200) process.stderr.write('report: ' + res.statusCode + '\\n');
  });
  req.on('error', (e) => { process.stderr.write('report failed: ' + e.message + '\\n'); resolve(); });
  req.end(body);
});
process.on('message', async (m) => {
  if (typeof m === 'object') setup(m);
  if (m === 'warm' && w.mode === 'persistent') {
    for (let i = 0; i < depots.length; i += 50) await Promise.all(depots.slice(i, i + 50).map(report));
  }
  if (m === 'on') on = true; else if (m === 'off') on = false;
  process.send(sent);
});
process.on('disconnect', () => { clearInterval(timer); process.exit(0); });
`;

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
