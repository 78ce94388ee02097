/**
 * `agent fetch` of one package from one depot to disk, against curl fetching the same bytes from nginx
 * with client certificates into a file followed by `sync` (goal: ≥ 0.8 × curl+sync).
 *
 * The depot is the shared read API (what `depot serve` mounts: mutual TLS, `POST /v1/chunks/batch`,
 * chunks re-hashed before serving) in its own process over a ChunkStore holding the package; nginx
 * serves the original file. The agent run includes everything `agent fetch` does: TUF refresh and
 * verification, manifest, parallel batches, per-chunk BLAKE3 + hash-tree proof, staging writes, the
 * chunk cache (or not), the whole-file re-read and re-hash, fsync and the atomic rename.
 *
 *   npx tsc -p tsconfig.json && BENCH_BYTES=1073741824 node dist/bench/agent-fetch.js
 * Needs nginx and curl (scripts/bench-deps.sh). Knobs: BENCH_ONLY=<part of a row name> (agent rows
 * only, no nginx), BENCH_PROFILE=/tmp/prefix (CPU profile of each agent fetch), BENCH_LOG=debug,
 * BENCH_VERIFY_ON_SERVE=0 (depot does not re-hash before serving), BENCH_HOT_MIB (the depot's hot-chunk memory), BENCH_DEPOT_PROFILE=/tmp/dir (CPU
 * profile of the depot process). DEPOTSYNC_BLAKE3=wasm: the agent hashes on WebAssembly, as the
 * self-contained agent does (the depot process keeps the addon).
 */
import { execFileSync, fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  statSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { fetchPackage } from '../agent/fetch/fetch.js';
import { RemoteSource } from '../agent/fetch/remote.js';
import { MemoryAgentState } from '../agent/state.js';
import { buildManifest, encodeManifest, manifestId } from '../src/content/manifest.js';
import { blake3Implementation } from '../src/hash/blake3.js';
import { createLogger, silentLogger } from '../src/log.js';
import { HttpClient } from '../src/net/client.js';
import { tlsServerOptions } from '../src/net/tls.js';
import { createCa, issueMachineCertificate, issueServerCertificate, loadCa } from '../src/pki/ca.js';
import { createMachineKeyAndCsr } from '../src/pki/csr.js';
import type { ServeEnv } from '../src/serve/env.js';
import { errorHandler } from '../src/serve/http-errors.js';
import { mutualTls } from '../src/serve/mtls.js';
import { publicReadRoutes, readRoutes } from '../src/serve/read-api.js';
import { ChunkStore } from '../src/store/chunk-store.js';
import { freePort, randomFile } from './lib/package-depot.js';
import { warmPageCache } from './lib/page-cache.js';
import { ingestFile } from '../src/store/ingest.js';
import { DirectoryTrustedStore, rootFingerprint } from '../src/tuf/client.js';
import { generateKeyPair } from '../src/tuf/keys.js';
import { TufRepository } from '../src/tuf/repository.js';

const BYTES = Number(process.env.BENCH_BYTES ?? 64 * 1024 * 1024);
const MiB = 1024 * 1024;
const benchLog = process.env.BENCH_LOG ? createLogger({ level: process.env.BENCH_LOG }) : silentLogger();
const CHUNKING = { minBytes: 16 * 1024, avgBytes: 64 * 1024, maxBytes: 256 * 1024 };

/** The depot process: read API over mutual TLS, metadata and targets from files, chunks from the store. */
async function depotMain(): Promise<void> {
  const root = process.env.BENCH_ROOT as string;
  const f = (n: string) => readFileSync(join(root, n), 'utf8');
  const store = ChunkStore.open(join(root, 'store'));
  const load = (dir: string) =>
    new Map(readdirSync(join(root, dir)).map((n) => [n, readFileSync(join(root, dir, n))]));
  const metadata = load('metadata');
  const targets = load('targets');
  const log = silentLogger();
  const source = {
    metadata: (n: string) => metadata.get(n),
    target: (n: string) => targets.get(n),
    revocations: () => undefined,
    chunks: store,
  };
  const app = new Hono<ServeEnv>();
  app.onError(errorHandler(log));
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.route('/', publicReadRoutes(source));
  app.use(
    '*',
    mutualTls({
      log,
      authorize: (p) => ({ ok: true, machine: { name: p.commonName, role: 'agent', serial: p.serial } }),
    }),
  );
  app.route(
    '/',
    readRoutes(source, log, {
      verifyOnServe: process.env.BENCH_VERIFY_ON_SERVE !== '0',
      ...(process.env.BENCH_HOT_MIB
        ? { hotChunkBytes: Number(process.env.BENCH_HOT_MIB) * 1024 * 1024 }
        : {}),
    }),
  );
  const server = https.createServer(
    {
      ...tlsServerOptions({ keyPem: f('depot.key'), certPem: f('depot.pem'), caPem: f('ca.pem') }),
      highWaterMark: MiB,
    } as https.ServerOptions,
    getRequestListener(app.fetch),
  );
  server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
  process.on('disconnect', () => process.exit(0));
}

/** BENCH_PROFILE=/tmp/x: a CPU profile of each agent fetch (not of the setup). */
async function startProfile(): Promise<(file: string) => Promise<void>> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async (file) => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

function timed(cmd: string, args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} exited ${r.status}`);
  return performance.now() - t0;
}

async function waitForNginx(url: string, root: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = spawnSync('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '--cacert',
      join(root, 'ca.pem'),
      '--cert',
      join(root, 'agent.pem'),
      '--key',
      join(root, 'agent.key'),
      url,
    ]);
    if (r.status === 0) return;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error('nginx did not start');
}

async function main(): Promise<void> {
  if (process.env.BENCH_ROLE === 'depot') return depotMain();
  const root = mkdtempSync(join(tmpdir(), 'depotsync-bench-agent-'));
  const procs: ChildProcess[] = [];
  try {
    // The package: one file, ingested into the depot's store, listed in a signed catalog.
    const input = join(root, 'www', 'setup.bin');
    mkdirSync(join(root, 'www'));
    randomFile(input, BYTES);
    const store = ChunkStore.open(join(root, 'store'));
    const ing = await ingestFile(store, input, { chunker: CHUNKING });
    await store.close();
    const keys = {
      root: generateKeyPair(),
      timestamp: generateKeyPair(),
      snapshot: generateKeyPair(),
      targets: generateKeyPair(),
    };
    const { repository, files } = TufRepository.create({
      root: { keys: [keys.root.publicKey], threshold: 1, signers: [keys.root.signer] },
      online: {
        timestamp: keys.timestamp.signer,
        snapshot: keys.snapshot.signer,
        targets: keys.targets.signer,
      },
      options: { binCount: 256 },
    });
    const manifest = buildManifest({
      name: 'big',
      version: '1',
      chunking: CHUNKING,
      files: [{ path: 'setup.bin', mode: 0o755, size: ing.size, chunks: ing.chunks }],
    });
    const mbytes = encodeManifest(manifest);
    const sha = createHash('sha256').update(mbytes).digest('hex');
    const all = [
      ...files,
      ...repository.addTarget('big@1.json', {
        length: mbytes.length,
        sha256: sha,
        custom: { manifestId: manifestId(mbytes), name: 'big', version: '1' },
      }),
    ];
    mkdirSync(join(root, 'metadata'));
    mkdirSync(join(root, 'targets'));
    for (const f of all) writeFileSync(join(root, 'metadata', f.name), f.bytes);
    writeFileSync(join(root, 'targets', `${sha}.big@1.json`), mbytes);
    const fingerprint = rootFingerprint(readFileSync(join(root, 'metadata', '1.root.json')));

    // TLS material: one CA; the depot and nginx present server certificates; the agent a machine one.
    const m = createCa({ commonName: 'bench CA' });
    const ca = loadCa(m.keyPem, m.certPem);
    const srv = issueServerCertificate(ca, { commonName: 'depot', ipAddresses: ['127.0.0.1'] });
    const a = createMachineKeyAndCsr({ machineName: 'bench-agent', role: 'agent' });
    const agentPem = issueMachineCertificate(ca, a.csrPem, { machineName: 'bench-agent', role: 'agent' });
    for (const [n, v] of Object.entries({
      'ca.pem': m.certPem,
      'depot.pem': srv.certPem,
      'depot.key': srv.keyPem,
      'agent.pem': agentPem,
      'agent.key': a.keyPem,
    }))
      writeFileSync(join(root, n), v);

    const depotProf = process.env.BENCH_DEPOT_PROFILE
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_DEPOT_PROFILE}`]
      : [];
    const depot = fork(process.argv[1] as string, [], {
      env: { ...process.env, BENCH_ROLE: 'depot', BENCH_ROOT: root, DEPOTSYNC_BLAKE3: '' },
      execArgv: depotProf,
    });
    procs.push(depot);
    const port = await new Promise<number>((r) =>
      depot.once('message', (msg) => r((msg as { port: number }).port)),
    );
    const url = `https://127.0.0.1:${port}`;
    const connect = (s: { name: string; url: string; kind: 'depot' | 'master' }) =>
      new RemoteSource(
        s,
        new HttpClient({
          baseUrl: s.url,
          caPem: m.certPem,
          certPem: agentPem,
          keyPem: a.keyPem,
          maxSockets: 8,
          logger: benchLog,
        }),
      );

    const rows: Array<{
      tool: string;
      ms: number;
      rssMiB?: number;
      agentCpuMs?: number;
      agentSysMs?: number;
      depotCpuMs?: number;
    }> = [];
    // CPU time (user + system, all threads) of a process, from /proc: where the 2 cores go.
    const procCpuMs = (pid: number) => {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return (Number(f[11]) + Number(f[12])) * 10;
    };
    const selfCpuMs = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    };
    // Warm page cache for every tool timed below (bench/lib/page-cache.ts): the package is written 3 times.
    warmPageCache(root, 3 * BYTES);
    // The depot's ceiling: the same batches drained by the same client, nothing verified or written.
    {
      const ids = manifest.files[0]!.chunks.map((c) => c.id);
      const r = connect({ name: 'depot', url, kind: 'depot' });
      const [a0, d0] = [selfCpuMs(), procCpuMs(depot.pid!)];
      const t0 = performance.now();
      const per = 128;
      await Promise.all(
        [0, 1, 2, 3].map(async (w) => {
          for (let i = w * per; i < ids.length; i += 4 * per) {
            const part = ids.slice(i, i + per);
            const res = await r.batch(part, 300 * 1024 * part.length, new AbortController().signal);
            for await (const piece of res.body) void piece;
          }
        }),
      );
      rows.push({
        tool: 'depot read API: batches drained, nothing verified or written (ceiling)',
        ms: performance.now() - t0,
        agentCpuMs: selfCpuMs() - a0,
        depotCpuMs: procCpuMs(depot.pid!) - d0,
      });
      r.close();
    }
    const variants = [
      ['depotsync agent fetch (chunk cache on: written only if a fetch fails)', 8 * 1024 * MiB],
      ['depotsync agent fetch (no chunk cache)', 0],
    ] as const;
    for (const [label, cacheMaxBytes] of variants.filter(
      (v) => !process.env.BENCH_ONLY || v[0].includes(process.env.BENCH_ONLY),
    )) {
      const agentDir = join(root, 'agent');
      rmSync(agentDir, { recursive: true, force: true });
      mkdirSync(join(agentDir, 'out'), { recursive: true });
      execFileSync('sync');
      const prof = process.env.BENCH_PROFILE ? await startProfile() : undefined;
      const [a0, d0, u0] = [selfCpuMs(), procCpuMs(depot.pid!), process.cpuUsage()];
      const t0 = performance.now();
      const r = await fetchPackage({
        name: 'big',
        version: '1',
        out: join(agentDir, 'out', 'setup.bin'),
        sources: [{ name: 'depot', url, kind: 'depot' }],
        connect,
        cacheDir: join(agentDir, 'cache'),
        store: new DirectoryTrustedStore(join(agentDir, 'tuf')),
        fingerprint,
        state: new MemoryAgentState(),
        settings: {
          cacheMaxBytes,
          ...(process.env.BENCH_CONCURRENCY ? { concurrency: Number(process.env.BENCH_CONCURRENCY) } : {}),
        },
        logger: benchLog,
      });
      const ms = performance.now() - t0;
      const [agentCpuMs, depotCpuMs] = [selfCpuMs() - a0, procCpuMs(depot.pid!) - d0];
      const split = process.cpuUsage(u0);
      const agentSysMs = split.system / 1000;
      if (prof) await prof(`${process.env.BENCH_PROFILE}-${cacheMaxBytes}.cpuprofile`);
      if (r.bytes !== BYTES) throw new Error(`fetched ${r.bytes} bytes, expected ${BYTES}`);
      rows.push({
        tool: `${label}, BLAKE3 ${blake3Implementation()}`,
        ms,
        rssMiB: process.resourceUsage().maxRSS / 1024,
        agentCpuMs,
        agentSysMs,
        depotCpuMs,
      });
      rmSync(agentDir, { recursive: true, force: true });
    }

    if (process.env.BENCH_ONLY) {
      for (const r of rows)
        console.log(
          r.tool,
          (r.ms / 1000).toFixed(2),
          's',
          r.agentCpuMs === undefined
            ? ''
            : `agent CPU ${(r.agentCpuMs / 1000).toFixed(2)} s (system ${((r.agentSysMs ?? 0) / 1000).toFixed(2)} s), depot CPU ${(r.depotCpuMs! / 1000).toFixed(2)} s`,
        );
      return;
    }
    // nginx (ssl_verify_client on) → curl into a file, then sync.
    const nport = await freePort();
    writeFileSync(
      join(root, 'nginx.conf'),
      `worker_processes 1; daemon off; pid ${root}/nginx.pid; error_log ${root}/nginx-error.log;
events {}
http { access_log off; sendfile on; client_body_temp_path ${root}/ngx-body; proxy_temp_path ${root}/ngx-proxy; fastcgi_temp_path ${root}/ngx-fcgi; uwsgi_temp_path ${root}/ngx-uwsgi; scgi_temp_path ${root}/ngx-scgi;
  server { listen 127.0.0.1:${nport} ssl; ssl_certificate ${root}/depot.pem; ssl_certificate_key ${root}/depot.key;
    ssl_client_certificate ${root}/ca.pem; ssl_verify_client on; ssl_protocols TLSv1.2 TLSv1.3; root ${root}/www; } }
`,
    );
    // nginx workers run as an unprivileged user: let them into the (mkdtemp, 0700) folder.
    chmodSync(root, 0o755);
    const nginx = spawn('nginx', ['-c', join(root, 'nginx.conf'), '-p', root], { stdio: 'ignore' });
    procs.push(nginx);
    await waitForNginx(`https://127.0.0.1:${nport}/setup.bin`, root);
    const curlOut = join(root, 'curl.out');
    rmSync(curlOut, { force: true });
    execFileSync('sync');
    const curlMs =
      timed('curl', [
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
        `https://127.0.0.1:${nport}/setup.bin`,
      ]) + timed('sync', []);
    if (statSync(curlOut).size !== BYTES)
      throw new Error(`curl fetched ${statSync(curlOut).size} bytes, expected ${BYTES}`);
    rmSync(curlOut);

    const mibs = (ms: number) => (BYTES / MiB / (ms / 1000)).toFixed(0);
    console.log(
      `package: ${(BYTES / MiB).toFixed(0)} MiB, ${manifest.tree.count} chunks (FastCDC 16/64/256 KiB), one depot on 127.0.0.1 (own process), TLS 1.3 mutual\n`,
    );
    console.log(
      '| tool | seconds | MiB/s | vs curl+sync | agent peak RSS MiB | agent CPU s (of it system) | depot CPU s |',
    );
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    const cpu = (ms?: number) => (ms === undefined ? '-' : (ms / 1000).toFixed(2));
    for (const r of rows)
      console.log(
        `| ${r.tool} | ${(r.ms / 1000).toFixed(2)} | ${mibs(r.ms)} | ${(curlMs / r.ms).toFixed(2)}× | ${r.rssMiB?.toFixed(0) ?? '-'} | ${cpu(r.agentCpuMs)}${r.agentSysMs === undefined ? '' : ` (${cpu(r.agentSysMs)})`} | ${cpu(r.depotCpuMs)} |`,
      );
    console.log(
      `| nginx → curl (client cert) + sync | ${(curlMs / 1000).toFixed(2)} | ${mibs(curlMs)} | 1.00× | - | - | - |`,
    );
  } finally {
    for (const p of procs)
      if (p.connected) p.disconnect();
      else p.kill();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
