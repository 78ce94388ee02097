/**
 * Depot sync benchmarks, each against a peer tool measured in the same run:
 *  1. fresh sync of one BENCH_BYTES package master → depot over mutual TLS on loopback, durable, vs
 *     curl fetching the same bytes from nginx (ssl_verify_client on) into a file, then `sync`;
 *     the depot's peak RSS during that sync;
 *  2. delta sync after 100 scattered 4 KiB edits and after a 1 MiB insertion in the middle: bytes moved
 *     (metadata, manifest, chunk deltas against the previous version's chunks, whole chunks: every
 *     byte the depot receives) and wall time vs `rsync --no-whole-file` from a local rsync daemon;
 *  3. no-op sync against a BENCH_PACKAGES catalog (time, bytes, requests), warm (depot serve) and cold
 *     (`depot sync` in a fresh process), and the catalog delta when one package changed.
 *
 *   npx tsc -p tsconfig.json && BENCH_BYTES=1073741824 BENCH_PACKAGES=10000 node dist/bench/depot-sync.js
 * Knobs: BENCH_MEM=1 (peaks of the depot's process.memoryUsage()), BENCH_HEAP=FILE:SECONDS (a heap
 * snapshot that far into the first sync), BENCH_DEPOT_NODE_FLAGS (node flags of the depot process, e.g.
 * "--max-semi-space-size=4"), BENCH_DEPOT_PROFILE=DIR,
 * BENCH_ONLY=fresh (only the fresh sync: time and peak RSS).
 * Needs nginx, curl and rsync (apt-get install -y nginx rsync curl).
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeFileSync,
  closeSync,
  writeSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, silentLogger } from '../src/log.js';
import { createCa, issueMachineCertificate, issueServerCertificate, loadCa, type Ca } from '../src/pki/ca.js';
import { createMachineKeyAndCsr } from '../src/pki/csr.js';
import { ChunkStore } from '../src/store/chunk-store.js';
import { hashedChunk } from '../src/store/chunk-id.js';
import { ingestFile } from '../src/store/ingest.js';
import { newDepotConfig } from '../depot/config.js';
import { openDepot, type Depot } from '../depot/depot.js';
import { depotLayout } from '../depot/layout.js';
import type { SyncResult } from '../depot/sync/engine.js';
import { BENCH_CHUNKING, startBenchMaster, type BenchMaster } from './depot-fake-master.js';
import { warmPageCache } from './lib/page-cache.js';

const BYTES = Number(process.env.BENCH_BYTES ?? 64 * 1024 * 1024);
const PACKAGES = Number(process.env.BENCH_PACKAGES ?? 1000);
const MiB = 1024 * 1024;

// ---- the depot, in its own process (its RSS and CPU are its own) --------------------------------

type ChildMsg = { cmd: 'sync'; dir: string; cold: boolean };
type ChildReply =
  { ok: true; result: SyncResult; ms: number; maxRssKiB: number } | { ok: false; error: string };

async function depotChild(): Promise<void> {
  let depot: Depot | undefined;
  // BENCH_MEM=1: where the depot's memory goes (peaks of process.memoryUsage(), sampled every 100 ms).
  const peak: Record<string, number> = {};
  if (process.env.BENCH_MEM) {
    setInterval(() => {
      for (const [k, v] of Object.entries(process.memoryUsage())) peak[k] = Math.max(peak[k] ?? 0, v);
    }, 100).unref();
  }
  process.on('message', async (m: ChildMsg) => {
    try {
      if (m.cold || !depot) {
        await depot?.close();
        depot = openDepot(m.dir, {
          logger: process.env.BENCH_LOG ? createLogger({ level: 'info' }) : silentLogger(),
        });
      }
      const t0 = performance.now();
      // BENCH_HEAP=FILE:SECONDS: a heap snapshot that many seconds into the first sync (where memory goes).
      const heap = /^(.+):(\d+(?:\.\d+)?)$/.exec(process.env.BENCH_HEAP ?? '');
      if (heap) {
        process.env.BENCH_HEAP = '';
        setTimeout(
          () => void import('node:v8').then((v8) => v8.writeHeapSnapshot(heap[1])),
          Number(heap[2]) * 1000,
        );
      }
      const result = await depot.engine.sync();
      const ms = performance.now() - t0;
      if (m.cold) {
        await depot.close();
        depot = undefined;
      }
      if (process.env.BENCH_MEM)
        console.error(
          `depot memory peaks (MiB): ${Object.entries(peak)
            .map(([k, v]) => `${k} ${(v / 1048576).toFixed(0)}`)
            .join(', ')}`,
        );
      process.send!({ ok: true, result, ms, maxRssKiB: process.resourceUsage().maxRSS } satisfies ChildReply);
    } catch (e) {
      process.send!({ ok: false, error: (e as Error).stack ?? String(e) } satisfies ChildReply);
    }
  });
  process.on('disconnect', () => void depot?.close().finally(() => process.exit(0)));
}

function ask(child: ChildProcess, dir: string, cold: boolean): Promise<Extract<ChildReply, { ok: true }>> {
  return new Promise((resolve, reject) => {
    child.once('message', (r: ChildReply) => (r.ok ? resolve(r) : reject(new Error(r.error))));
    child.send({ cmd: 'sync', dir, cold } satisfies ChildMsg);
  });
}

// ---- helpers ------------------------------------------------------------------------------------

function randomFile(path: string, bytes: number, seed: number): void {
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(4 * MiB);
  let x = seed >>> 0 || 1;
  for (let done = 0; done < bytes; done += buf.length) {
    for (let i = 0; i < buf.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      buf.writeUInt32LE(x >>> 0, i);
    }
    writeSync(fd, buf, 0, Math.min(buf.length, bytes - done));
  }
  closeSync(fd);
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: string[]): { ms: number; out: string } {
  const t0 = performance.now();
  const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { ms: performance.now() - t0, out };
}

async function publishFile(
  master: BenchMaster,
  store: ChunkStore,
  name: string,
  version: string,
  path: string,
): Promise<void> {
  const r = await ingestFile(store, path, { chunker: BENCH_CHUNKING });
  master.publish([{ name, version, size: r.size, chunks: r.chunks }]);
}

async function waitFor(url: string, tries = 100): Promise<void> {
  for (let i = 0; i < tries; i++) {
    try {
      execFileSync('curl', ['-sk', '-o', '/dev/null', url]);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${url} did not come up`);
}

function depotDir(root: string, ca: Ca, master: BenchMaster, name: string): string {
  const dir = join(root, name);
  const layout = depotLayout(dir);
  mkdirSync(layout.tlsDir, { recursive: true });
  const { keyPem, csrPem } = createMachineKeyAndCsr({
    machineName: name,
    role: 'depot',
    ipAddresses: ['127.0.0.1'],
  });
  writeFileSync(layout.key, keyPem, { mode: 0o600 });
  writeFileSync(layout.cert, issueMachineCertificate(ca, csrPem, { machineName: name, role: 'depot' }));
  writeFileSync(layout.caCert, ca.certPem);
  writeFileSync(
    layout.config,
    JSON.stringify(
      newDepotConfig({
        name,
        masterUrl: master.url,
        fingerprint: master.fingerprint,
        hosts: ['127.0.0.1'],
        sync: { statusEveryMs: 0 },
      }),
    ),
  );
  return dir;
}

// ---- main ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.argv[2] === 'depot-child') return depotChild();
  const root = mkdtempSync(join(tmpdir(), 'depotsync-bench-depot-'));
  // nginx workers run as www-data: a 0700 mkdtemp folder would make every request a 403.
  chmodSync(root, 0o755);
  const procs: ChildProcess[] = [];
  let master: BenchMaster | undefined;
  let store: ChunkStore | undefined;
  try {
    const m = createCa({ commonName: 'bench CA' });
    const ca = loadCa(m.keyPem, m.certPem);
    store = ChunkStore.open(join(root, 'master-store'));
    master = await startBenchMaster(ca, store);
    // BENCH_DEPOT_PROFILE=/tmp/dir: a CPU profile of the depot process (written when it exits).
    const prof = process.env.BENCH_DEPOT_PROFILE
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_DEPOT_PROFILE}`]
      : [];
    const child = fork(process.argv[1]!, ['depot-child'], {
      stdio: 'inherit',
      execArgv: [...prof, ...(process.env.BENCH_DEPOT_NODE_FLAGS ?? '').split(' ').filter(Boolean)],
    });
    procs.push(child);

    // 1. Fresh sync vs nginx → curl + sync.
    const v1 = join(root, 'v1.bin');
    randomFile(v1, BYTES, 1);
    await publishFile(master, store, 'big', '1', v1);
    const dA = depotDir(root, ca, master, 'depot-a');
    // The publish left ~1 GiB of the master store dirty in the page cache; flush it first, or the depot's
    // first fdatasync pays for it (ext4 commits its journal with every dirty data block), while the
    // curl peer, timed later, would not.
    run('sync', []);
    // The depot's writes and curl's, timed later, both into warm page cache (bench/lib/page-cache.ts).
    warmPageCache(root, 3 * BYTES);
    const fresh = await ask(child, dA, false);
    console.error(
      `fresh sync: ${(fresh.ms / 1000).toFixed(2)} s, depot peak RSS ${(fresh.maxRssKiB / 1024).toFixed(0)} MiB`,
    );
    // BENCH_ONLY=fresh: stop here (the peak-RSS runs at 4 GiB).
    if (process.env.BENCH_ONLY === 'fresh') return;

    const www = join(root, 'www');
    mkdirSync(www);
    execFileSync('cp', [v1, join(www, 'v1.bin')]);
    const srv = issueServerCertificate(ca, { commonName: 'nginx', ipAddresses: ['127.0.0.1'] });
    const agent = createMachineKeyAndCsr({ machineName: 'bench-agent', role: 'agent' });
    for (const [f, v] of Object.entries({
      'ca.pem': ca.certPem,
      'srv.pem': srv.certPem,
      'srv.key': srv.keyPem,
      'agent.key': agent.keyPem,
      'agent.pem': issueMachineCertificate(ca, agent.csrPem, { machineName: 'bench-agent', role: 'agent' }),
    }))
      writeFileSync(join(root, f), v);
    const nginxPort = await freePort();
    writeFileSync(
      join(root, 'nginx.conf'),
      `worker_processes 1; daemon off; pid ${root}/nginx.pid; error_log ${root}/nginx-error.log;
events {}
http { access_log off; sendfile on; client_body_temp_path ${root}/ngx-body; proxy_temp_path ${root}/ngx-proxy; fastcgi_temp_path ${root}/ngx-fcgi; uwsgi_temp_path ${root}/ngx-uwsgi; scgi_temp_path ${root}/ngx-scgi;
  server { listen 127.0.0.1:${nginxPort} ssl; ssl_certificate ${root}/srv.pem; ssl_certificate_key ${root}/srv.key;
    ssl_client_certificate ${root}/ca.pem; ssl_verify_client on; ssl_protocols TLSv1.2 TLSv1.3; root ${www}; } }
`,
    );
    const nginx = spawn('nginx', ['-c', join(root, 'nginx.conf'), '-p', root], { stdio: 'ignore' });
    procs.push(nginx);
    await waitFor(`https://127.0.0.1:${nginxPort}/`);
    // The same for the peer: the copy nginx serves is flushed first, and the peer's `sync` flushes its
    // own output file only (coreutils `sync FILE`), not whatever else is dirty on the machine.
    run('sync', []);
    const curlOut = join(root, 'curl.out');
    const c = run('curl', [
      '-sS',
      '--fail',
      '--cacert',
      join(root, 'ca.pem'),
      '--cert',
      join(root, 'agent.pem'),
      '--key',
      join(root, 'agent.key'),
      '-o',
      curlOut,
      `https://127.0.0.1:${nginxPort}/v1.bin`,
    ]);
    const s = run('sync', [curlOut]);
    const curlMs = c.ms + s.ms;
    if (process.env.BENCH_LOG) console.error(`peer: curl ${c.ms.toFixed(0)} ms, sync ${s.ms.toFixed(0)} ms`);
    // A refused request would time an error page: the peer must have moved the whole package.
    if (statSync(curlOut).size !== BYTES)
      throw new Error(`curl fetched ${statSync(curlOut).size} bytes, expected ${BYTES}`);
    rmSync(curlOut);

    // 2. Deltas vs rsync --no-whole-file from a local daemon.
    const v2 = join(root, 'v2-edits.bin');
    execFileSync('cp', [v1, v2]);
    const fd = openSync(v2, 'r+');
    for (let i = 0; i < 100; i++)
      writeSync(fd, Buffer.alloc(4096, i + 1), 0, 4096, Math.floor(((i + 0.5) * BYTES) / 100));
    closeSync(fd);
    const v3 = join(root, 'v3-insert.bin');
    execFileSync('sh', ['-c', `head -c ${BYTES / 2} ${v1} > ${v3}`]); // no readFileSync: packages may exceed 2 GiB
    const ins = join(root, 'ins.bin');
    randomFile(ins, MiB, 77);
    execFileSync('sh', ['-c', `cat ${ins} >> ${v3} && tail -c ${BYTES - BYTES / 2} ${v1} >> ${v3}`]);
    const rsyncSrc = join(root, 'rsync-src');
    mkdirSync(rsyncSrc);
    const rsyncPort = await freePort();
    writeFileSync(
      join(root, 'rsyncd.conf'),
      `port = ${rsyncPort}\naddress = 127.0.0.1\nuse chroot = no\npid file = ${root}/rsyncd.pid\n[bench]\npath = ${rsyncSrc}\nread only = yes\n`,
    );
    const rsyncd = spawn('rsync', ['--daemon', '--no-detach', `--config=${join(root, 'rsyncd.conf')}`], {
      stdio: 'ignore',
    });
    procs.push(rsyncd);
    await new Promise((r) => setTimeout(r, 300));
    const deltas: Array<{
      name: string;
      depot: Extract<ChildReply, { ok: true }>;
      rsyncBytes: number;
      rsyncMs: number;
      rsyncSyncMs: number;
    }> = [];
    for (const [name, file, version] of [
      ['100 scattered 4 KiB edits', v2, '2'],
      ['1 MiB inserted in the middle', v3, '3'],
    ] as const) {
      await publishFile(master, store, 'big', version, file);
      const depot = await ask(child, dA, false);
      execFileSync('cp', [file, join(rsyncSrc, 'pkg.bin')]);
      const dest = join(root, `rsync-dest-${version}`);
      mkdirSync(dest);
      execFileSync('cp', [v1, join(dest, 'pkg.bin')]);
      execFileSync('sync');
      // --ignore-times: the two files have the same size and may share an mtime second; compare content.
      const r = run('rsync', [
        '--no-whole-file',
        '--ignore-times',
        '--stats',
        `rsync://127.0.0.1:${rsyncPort}/bench/pkg.bin`,
        join(dest, 'pkg.bin'),
      ]);
      const sent = Number(/Total bytes sent: ([\d,]+)/.exec(r.out)?.[1]?.replace(/,/g, '') ?? NaN);
      const recv = Number(/Total bytes received: ([\d,]+)/.exec(r.out)?.[1]?.replace(/,/g, '') ?? NaN);
      const sy = run('sync', []);
      deltas.push({ name, depot, rsyncBytes: sent + recv, rsyncMs: r.ms, rsyncSyncMs: r.ms + sy.ms });
      rmSync(dest, { recursive: true });
    }

    // 3. A catalog of PACKAGES small packages: no-op sync, and the catalog delta of one change.
    master.unpublish(['big@1.json', 'big@2.json', 'big@3.json']);
    const small: Array<{
      name: string;
      version: string;
      size: number;
      chunks: Array<{ id: string; length: number }>;
    }> = [];
    const chunks = [];
    for (let i = 0; i < PACKAGES; i++) {
      const data = Buffer.alloc(1024);
      data.writeUInt32LE(i, 0);
      data.write(`package ${i}`, 8);
      const ch = hashedChunk(data);
      chunks.push(ch);
      small.push({
        name: `pkg${i}`,
        version: '1.0',
        size: data.length,
        chunks: [{ id: ch.id, length: data.length }],
      });
    }
    await store.putMany(chunks);
    master.publish(small);
    const dB = depotDir(root, ca, master, 'depot-b');
    const first = await ask(child, dB, true);
    await ask(child, dB, false); // warm the process up
    let before = master.requests();
    const warm = await ask(child, dB, false);
    const warmRequests = master.requests() - before;
    before = master.requests();
    const cold = await ask(child, dB, true);
    const coldRequests = master.requests() - before;
    const changed = Buffer.alloc(1024, 9);
    const ch = hashedChunk(changed);
    await store.putMany([ch]);
    master.publish([{ name: 'pkg0', version: '1.1', size: 1024, chunks: [{ id: ch.id, length: 1024 }] }]);
    const delta = await ask(child, dB, false);

    // ---- report ----
    const mib = (b: number) => (b / MiB).toFixed(2);
    const sec = (ms: number) => (ms / 1000).toFixed(2);
    console.log(
      `\n## depot sync benchmarks (node ${process.version}, ${BYTES / MiB} MiB package, ${PACKAGES} packages catalog)\n`,
    );
    console.log('### fresh sync of one package over mutual TLS on loopback (durable)\n');
    console.log('| tool | seconds | MiB/s | bytes moved | peak RSS |');
    console.log('|---|---:|---:|---:|---:|');
    console.log(
      `| depotsync depot sync | ${sec(fresh.ms)} | ${(BYTES / MiB / (fresh.ms / 1000)).toFixed(0)} | ${mib(fresh.result.bytesFetched)} MiB | ${(fresh.maxRssKiB / 1024).toFixed(0)} MiB |`,
    );
    console.log(
      `| nginx → curl (client cert) + sync | ${sec(curlMs)} | ${(BYTES / MiB / (curlMs / 1000)).toFixed(0)} | ${mib(BYTES)} MiB | - |`,
    );
    console.log(`\ndepotsync / (curl+sync) throughput: ${(curlMs / fresh.ms).toFixed(2)} (goal ≥ 0.8)\n`);
    console.log('### delta sync vs rsync --no-whole-file (local daemon)\n');
    console.log(
      '| change | depot bytes (metadata+manifest+deltas+chunks) | rsync bytes | depot/rsync | depot s | rsync s | rsync+sync s |',
    );
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    for (const d of deltas) {
      const b = d.depot.result.bytesByStep;
      console.log(
        `| ${d.name} | ${d.depot.result.bytesFetched} (${b.metadata ?? 0}+${b.manifests ?? 0}+${b.deltas ?? 0}+${b.chunks ?? 0}) | ${d.rsyncBytes} | ${(d.depot.result.bytesFetched / d.rsyncBytes).toFixed(2)} | ${sec(d.depot.ms)} | ${sec(d.rsyncMs)} | ${sec(d.rsyncSyncMs)} |`,
      );
    }
    console.log(`\n### catalog of ${PACKAGES} packages\n`);
    console.log('| case | ms | bytes received | requests |');
    console.log('|---|---:|---:|---:|');
    console.log(
      `| first sync of the whole catalog (cold) | ${first.ms.toFixed(0)} | ${first.result.bytesFetched} | |`,
    );
    console.log(
      `| no-op sync, warm (depot serve) | ${warm.ms.toFixed(1)} | ${warm.result.bytesFetched} | ${warmRequests} |`,
    );
    console.log(
      `| no-op sync, cold (depot sync, new process) | ${cold.ms.toFixed(1)} | ${cold.result.bytesFetched} | ${coldRequests} |`,
    );
    console.log(
      `| one package changed: catalog delta (metadata only) | ${delta.ms.toFixed(1)} | ${delta.result.bytesByStep.metadata ?? 0} (total ${delta.result.bytesFetched}) | |`,
    );
    console.log(
      '\n(requests include the status report the depot posts after each sync; a no-op sync itself asks only for timestamp.json)',
    );
  } finally {
    for (const p of procs) {
      if (p.connected)
        p.disconnect(); // the depot child closes its database and exits
      else p.kill();
    }
    await master?.close();
    await store?.close();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
