/**
 * FastCDC chunker throughput on a BENCH_BYTES (default 1 GiB) in-memory random buffer, alone and
 * followed by BLAKE3 of every chunk (what publishing does). Reference: about 1.5 GB/s for the
 * chunker alone in plain TypeScript; the gear scan now runs in WebAssembly (src/chunk/gear-wasm.ts).
 *
 *   npx tsc -p tsconfig.json && BENCH_BYTES=1073741824 node dist/bench/chunk.js
 */
import { randomFillSync } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { Chunker, DEFAULT_CHUNKER_OPTIONS } from '../src/chunk/fastcdc.js';
import { blake3, blake3Implementation } from '../src/hash/blake3.js';

const BYTES = Number(process.env.BENCH_BYTES ?? 1024 ** 3);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const READ_BYTES = 1024 * 1024;
const REFERENCE_GBPS = 1.5;

interface Result {
  seconds: number;
  /** User + system CPU time of the process: less disturbed than wall time on a shared machine. */
  cpuSeconds: number;
  chunks: number;
}

function run(data: Uint8Array, hash: boolean): Result {
  const t = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const c = new Chunker();
  let chunks = 0;
  const take = (list: Uint8Array[]): void => {
    for (const chunk of list) {
      if (hash) blake3(chunk);
      chunks++;
    }
  };
  for (let i = 0; i < data.length; i += READ_BYTES) take(c.push(data.subarray(i, i + READ_BYTES)));
  take(c.finish());
  const cpu = process.cpuUsage(cpu0);
  return {
    seconds: Number(process.hrtime.bigint() - t) / 1e9,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    chunks,
  };
}

function best(data: Uint8Array, hash: boolean): Result {
  let out: Result = { seconds: Infinity, cpuSeconds: Infinity, chunks: 0 };
  for (let r = 0; r < RUNS; r++) {
    const res = run(data, hash);
    if (res.seconds < out.seconds) out = res;
  }
  return out;
}

function main(): void {
  const data = new Uint8Array(BYTES);
  for (let i = 0; i < BYTES; i += 64 * 1024 * 1024)
    randomFillSync(data, i, Math.min(64 * 1024 * 1024, BYTES - i));
  run(data.subarray(0, Math.min(BYTES, 64 * 1024 * 1024)), true); // JIT warm-up

  const o = DEFAULT_CHUNKER_OPTIONS;
  const rows: Array<[string, Result]> = [
    ['FastCDC chunker (1 MiB pushes, chunks copied out)', best(data, false)],
    [`FastCDC + BLAKE3 per chunk (${blake3Implementation()})`, best(data, true)],
  ];
  console.log(
    `\nFastCDC on ${(BYTES / 1024 ** 2).toFixed(0)} MiB of random bytes in memory ` +
      `(min ${o.minBytes / 1024} / avg ${o.avgBytes / 1024} / max ${o.maxBytes / 1024} KiB; best of ${RUNS})\n`,
  );
  console.log(
    '| run | MB/s (wall) | MB/s (per CPU second) | chunks | mean chunk (KiB) | wall vs reference 1.5 GB/s |',
  );
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const [name, r] of rows) {
    const gbps = BYTES / r.seconds / 1e9;
    const cpuMBps = BYTES / r.cpuSeconds / 1e6;
    const mean = BYTES / r.chunks / 1024;
    console.log(
      `| ${name} | ${(gbps * 1000).toFixed(0)} | ${cpuMBps.toFixed(0)} | ${r.chunks} | ${mean.toFixed(1)} | ${(gbps / REFERENCE_GBPS).toFixed(2)}x |`,
    );
  }
  const load = loadavg()[0] ?? 0;
  console.log(
    `\nLoad average during the run: ${load.toFixed(2)} on ${cpus().length} cores (wall-clock figures are only meaningful near idle).`,
  );
}

main();
