/**
 * 200 agents at once against one depot: aggregate throughput, the depot's peak RSS and the
 * failures (must be zero), against nginx serving the same file to the same load over mutual TLS
 * (issue goal: ≥ 0.8 × nginx).
 *
 * One load-generator process opens one mutual-TLS connection per agent with the client code of
 * `agent fetch` (HttpClient + RemoteSource.batch) and asks for the package's chunks in the batches
 * `agent fetch` plans (planBatches, its default 8 MiB / 1024 chunks per batch), one batch at a time per
 * agent. Bodies are drained and counted to the exact byte (chunk records included); agent 0 also
 * decodes every record (BatchDecoder: ids in order, lengths). Chunk hashing, staging and disk writes are
 * the agent's own costs and are left out on purpose: this measures the server. nginx gets the same
 * number of connections, each downloading the whole file with the same HttpClient.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/agent-load.js
 * Knobs: BENCH_AGENTS (200), BENCH_BYTES (100 MiB), BENCH_NGINX_WORKERS (1: one process each side;
 * "auto" for one per core), BENCH_VERIFY_ON_SERVE=0 (depot does not re-hash chunks before serving),
 * BENCH_VERIFIED_TTL_MS (how long a re-hashed chunk is served from disk unchecked; default 0, as depots),
 * BENCH_DEPOT_PROFILE=/tmp/dir (CPU profile of the depot process, written when it exits),
 * BENCH_BATCH_MEMORY_MIB (the read API's batch memory budget; default 64).
 * Needs nginx and curl (scripts/bench-deps.sh).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_FETCH_SETTINGS } from '../agent/config.js';
import { RemoteSource } from '../agent/fetch/remote.js';
import { HttpClient } from '../src/net/client.js';
import { BatchDecoder, planBatches } from '../src/wire/chunk-batch.js';
import {
  forkDepot,
  MiB,
  peakRssMiB,
  preparePackage,
  startNginx,
  type PreparedPackage,
} from './lib/package-depot.js';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 200);
const BYTES = Number(process.env.BENCH_BYTES ?? 100 * MiB);
const RECORD_HEADER_BYTES = 36;

interface LoadResult {
  ms: number;
  bytes: number;
  failures: string[];
  /** Per-agent completion times, sorted. */
  agentMs: number[];
}

/** Start every agent at once; each runs `one(i)` over its own connection. */
async function load(one: (i: number) => Promise<number>): Promise<LoadResult> {
  const failures: string[] = [];
  const agentMs: number[] = [];
  let bytes = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: AGENTS }, async (_, i) => {
      try {
        const n = await one(i); // not `bytes += await …`: that reads `bytes` before the await
        bytes += n;
        agentMs.push(performance.now() - t0);
      } catch (e) {
        failures.push(`agent ${i}: ${(e as Error).message}`);
      }
    }),
  );
  return { ms: performance.now() - t0, bytes, failures, agentMs: agentMs.sort((a, b) => a - b) };
}

function client(pkg: PreparedPackage, url: string): HttpClient {
  return new HttpClient({
    baseUrl: url,
    caPem: pkg.tls.caPem,
    certPem: pkg.tls.agentCertPem,
    keyPem: pkg.tls.agentKeyPem,
    maxSockets: 1,
    timeoutMs: 300_000,
    minBytesPerSecond: 0,
  });
}

async function depotLoad(pkg: PreparedPackage, url: string): Promise<LoadResult> {
  const seen = new Set<string>();
  const needs = pkg.manifest.files[0]!.chunks.filter((c) => !seen.has(c.id) && seen.add(c.id));
  const batches = planBatches(
    needs,
    DEFAULT_FETCH_SETTINGS.batchMaxBytes,
    DEFAULT_FETCH_SETTINGS.batchMaxChunks,
  );
  const remotes = Array.from(
    { length: AGENTS },
    () => new RemoteSource({ name: 'depot', url, kind: 'depot' }, client(pkg, url)),
  );
  try {
    return await load(async (i) => {
      const remote = remotes[i] as RemoteSource;
      let total = 0;
      for (const batch of batches) {
        const ids = batch.map((c) => c.id);
        const expected = batch.reduce((s, c) => s + RECORD_HEADER_BYTES + c.length, 0);
        const res = await remote.batch(ids, expected, new AbortController().signal);
        const decoder = i === 0 ? new BatchDecoder(ids, CHUNK_MAX_BYTES, 'bench batch') : undefined;
        let got = 0;
        let records = 0;
        for await (const piece of res.body) {
          got += (piece as Buffer).length;
          if (decoder)
            for (const r of decoder.push(piece as Buffer))
              records += r.data && r.data.length === batch[records]!.length ? 1 : Number.NaN;
        }
        if (got !== expected) throw new Error(`batch of ${ids.length}: ${got} bytes, expected ${expected}`);
        if (decoder && records !== ids.length)
          throw new Error(`batch of ${ids.length}: ${records} good records`);
        total += got;
      }
      return total;
    });
  } finally {
    for (const r of remotes) r.close();
  }
}

const CHUNK_MAX_BYTES = 256 * 1024;

async function nginxLoad(pkg: PreparedPackage, url: string): Promise<LoadResult> {
  const clients = Array.from({ length: AGENTS }, () => client(pkg, url));
  try {
    return await load(async (i) => {
      const res = await (clients[i] as HttpClient).getStream('/setup.bin', {
        maxBytes: BYTES,
        what: 'setup.bin',
      });
      let got = 0;
      for await (const piece of res.body) got += (piece as Buffer).length;
      if (got !== BYTES) throw new Error(`setup.bin: ${got} bytes, expected ${BYTES}`);
      return got;
    });
  } finally {
    for (const c of clients) c.close();
  }
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'depotsync-bench-load-'));
  const stops: Array<() => void> = [];
  try {
    const pkg = await preparePackage(root, BYTES);
    const depot = await forkDepot(root, { profileDir: process.env.BENCH_DEPOT_PROFILE });
    stops.push(() => depot.child.connected && depot.child.disconnect());
    const d = await depotLoad(pkg, depot.url);
    const depotRss = peakRssMiB(depot.child.pid as number);
    depot.child.disconnect();

    const workers =
      process.env.BENCH_NGINX_WORKERS === 'auto' ? 'auto' : Number(process.env.BENCH_NGINX_WORKERS ?? 1);
    const nginx = await startNginx(root, { workers });
    stops.push(() => nginx.proc.kill());
    const n = await nginxLoad(pkg, nginx.url);
    const nginxRss = peakRssMiB(nginx.proc.pid as number);
    nginx.proc.kill();

    const mibs = (r: LoadResult) => r.bytes / MiB / (r.ms / 1000);
    const pct = (r: LoadResult, q: number) =>
      ((r.agentMs[Math.min(r.agentMs.length - 1, Math.floor(q * r.agentMs.length))] ?? NaN) / 1000).toFixed(
        1,
      );
    const chunks = pkg.manifest.tree.count;
    console.log(
      `${AGENTS} agents at once, one mutual-TLS connection each, ${(BYTES / MiB).toFixed(0)} MiB package (${chunks} chunks, FastCDC 16/64/256 KiB), ` +
        `one load generator process, server on 127.0.0.1; depot verify-on-serve ${process.env.BENCH_VERIFY_ON_SERVE === '0' ? 'off' : 'on'}, nginx workers ${workers}\n`,
    );
    console.log(
      '| server | seconds | aggregate MiB/s | vs nginx | agent done p50 / max s | peak RSS MiB | failures |',
    );
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    const row = (name: string, r: LoadResult, rss: number | undefined) =>
      console.log(
        `| ${name} | ${(r.ms / 1000).toFixed(1)} | ${mibs(r).toFixed(0)} | ${(mibs(r) / mibs(n)).toFixed(2)}× | ${pct(r, 0.5)} / ${pct(r, 1)} | ${rss?.toFixed(0) ?? '-'} | ${r.failures.length} |`,
      );
    row('depotsync depot: POST /v1/chunks/batch (agent fetch batches)', d, depotRss);
    row('nginx: GET of the same file (client cert)', n, nginxRss);
    for (const f of [...d.failures, ...n.failures].slice(0, 5)) console.log(`failure: ${f}`);
    if (d.failures.length || n.failures.length) process.exitCode = 1;
  } finally {
    for (const s of stops) s();
    // Give the depot a moment to write its CPU profile before its folder goes.
    await new Promise((r) => setTimeout(r, 200));
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
