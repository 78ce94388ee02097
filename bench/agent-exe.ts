/**
 * The self-contained agent executables (scripts/package-agent.mjs): their sizes, and start-up time
 * (`version`, best and median of BENCH_RUNS, default 7) of the Linux executable, the project's agent
 * (`node bin/depotsync.js version`, native addons) and the Windows executable under wine (when
 * installed). Builds into .cache/package-agent/bench unless BENCH_AGENT_BUILD names a built folder.
 *
 * Then `agent fetch` of one package (BENCH_FETCH_BYTES, default 1 GiB; 0 skips it) from a real master
 * and depot on 127.0.0.1, BENCH_FETCH_RUNS times (default 5) each, interleaved: the Linux executable
 * (BLAKE3 and zstd in WebAssembly), the project's agent (`node bin/depotsync.js agent fetch`, native
 * addons), and curl fetching the same file from nginx with the agent's client certificate, then `sync`.
 * Each run starts with an empty chunk cache and output, after the same page-cache warm-up
 * (bench/lib/page-cache.ts). Needs nginx and curl (scripts/bench-deps.sh).
 */
import { execFileSync, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { enrollDepot, freePort, runJson, startService, waitForHttps } from '../cli/demo/processes.js';
import { randomFile, startNginx } from './lib/package-depot.js';
import { warmPageCache } from './lib/page-cache.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const runs = Number(process.env.BENCH_RUNS ?? 7);
const dir = process.env.BENCH_AGENT_BUILD ?? join(root, '.cache', 'package-agent', 'bench');
if (!process.env.BENCH_AGENT_BUILD) {
  const t = performance.now();
  execFileSync(process.execPath, [join(root, 'scripts', 'package-agent.mjs'), '--out', dir], {
    stdio: 'ignore',
  });
  process.stdout.write(`build (both targets): ${((performance.now() - t) / 1000).toFixed(1)} s\n\n`);
}
const info = JSON.parse(readFileSync(join(dir, 'build-info.json'), 'utf8')) as {
  bundleBytes: number;
  nativeStubs: string[];
};
const linux = join(dir, 'depotsync-agent-linux-x64');
const windows = join(dir, 'depotsync-agent-win-x64.exe');
const wine = ['/usr/bin/wine', '/usr/lib/wine/wine64'].find((p) => existsSync(p));
const wineEnv = {
  ...process.env,
  WINEPREFIX: join(root, '.cache', 'package-agent', 'wineprefix'),
  WINEDEBUG: '-all',
  NODE_SKIP_PLATFORM_CHECK: '1',
  WINEDLLOVERRIDES: 'mscoree,mshtml=',
};

function time(cmd: string, args: string[], env = process.env): { best: number; median: number } {
  const ms: number[] = [];
  for (let i = 0; i < runs + 1; i++) {
    const t = performance.now();
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'ignore'], env });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}`);
    if (i > 0) ms.push(performance.now() - t); // the first run warms the page cache
  }
  ms.sort((a, b) => a - b);
  return { best: ms[0] as number, median: ms[ms.length >> 1] as number };
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
process.stdout.write('| file | size |\n| --- | ---: |\n');
process.stdout.write(`| depotsync-agent-linux-x64 | ${mib(statSync(linux).size)} |\n`);
process.stdout.write(`| depotsync-agent-win-x64.exe | ${mib(statSync(windows).size)} |\n`);
process.stdout.write(`| the bundled agent (inside both) | ${mib(info.bundleBytes)} |\n\n`);

const rows: Array<[string, { best: number; median: number }]> = [
  ['depotsync-agent-linux-x64 version', time(linux, ['version'])],
  [
    'node bin/depotsync.js version (project, native)',
    time(process.execPath, [join(root, 'bin', 'depotsync.js'), 'version']),
  ],
];
if (wine) {
  spawnSync('wineserver', ['-p', '60'], { env: wineEnv, stdio: 'ignore' });
  rows.push(['wine depotsync-agent-win-x64.exe version', time(wine, [windows, 'version'], wineEnv)]);
  spawnSync('wineserver', ['-k'], { env: wineEnv, stdio: 'ignore' });
}
process.stdout.write(`| start-up (${runs} runs) | best | median |\n| --- | ---: | ---: |\n`);
for (const [name, t] of rows)
  process.stdout.write(`| ${name} | ${t.best.toFixed(0)} ms | ${t.median.toFixed(0)} ms |\n`);
if (info.nativeStubs.length > 0)
  process.stdout.write(`\nnative addons still stubbed in the executables: ${info.nativeStubs.join(', ')}\n`);

const FETCH_BYTES = Number(process.env.BENCH_FETCH_BYTES ?? 1024 * 1048576);
const FETCH_RUNS = Number(process.env.BENCH_FETCH_RUNS ?? 5);
if (FETCH_BYTES > 0) await fetchBench();

/** Wall, user and system seconds of one command (GNU time), or a throw when it fails. */
function timed(argv: string[]): { wall: number; cpu: number } {
  const r = spawnSync('/usr/bin/time', ['-f', 'TIME %e %U %S', ...argv], {
    encoding: 'utf8',
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const m = /TIME ([\d.]+) ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${argv.join(' ')}: exit ${r.status}\n${r.stderr.slice(-2000)}`);
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]) };
}

async function fetchBench(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'depotsync-bench-exe-'));
  const cli = join(root, 'bin', 'depotsync.js');
  const services: Array<{ stop(): Promise<unknown> }> = [];
  let nginx: ChildProcess | undefined;
  try {
    const www = join(tmp, 'www');
    mkdirSync(www);
    const file = join(www, 'big.bin');
    randomFile(file, FETCH_BYTES);
    randomFile(join(www, 'setup.bin'), 4096);
    const M = join(tmp, 'M');
    const D = join(tmp, 'D');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    let t = performance.now();
    runJson(['master', 'publish', '--dir', M, '--name', 'big', '--version', '1', file]);
    const publishS = (performance.now() - t) / 1000;
    const [mp, dp] = [await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    const depotUrl = `https://127.0.0.1:${dp}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name: 'depot-1', port: dp });
    t = performance.now();
    services.push(startService('depot-1', ['depot', 'serve', '--dir', D]));
    await waitForHttps(depotUrl);
    for (;;) {
      const st = spawnSync(process.execPath, [cli, 'status', '--dir', D, '--json'], { encoding: 'utf8' });
      const served = JSON.parse(st.stdout.trim().split('\n').pop() || '{}').servedGeneration ?? 0;
      if (served >= 1) break;
      if (performance.now() - t > 900_000) throw new Error('the depot did not sync in 15 minutes');
      await new Promise((r) => setTimeout(r, 1000));
    }
    const syncS = (performance.now() - t) / 1000;
    const init = (A: string, argv: string[], name: string) => {
      const token = runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;
      const args = ['init', '--dir', A, '--master', masterUrl, '--fingerprint', fp, '--token', token];
      execFileSync(argv[0] as string, [...argv.slice(1), ...args, '--name', name, '--depot', depotUrl], {
        stdio: 'ignore',
      });
    };
    const exeArgv = [linux];
    const nodeArgv = [process.execPath, cli, 'agent'];
    const Aexe = join(tmp, 'A-exe');
    const Anode = join(tmp, 'A-node');
    init(Aexe, exeArgv, 'pc-exe');
    init(Anode, nodeArgv, 'pc-node');
    // nginx with the depot's server certificate, asking for the agent's client certificate.
    copyFileSync(join(D, 'tls', 'depot-cert.pem'), join(tmp, 'depot.pem'));
    copyFileSync(join(D, 'tls', 'depot-key.pem'), join(tmp, 'depot.key'));
    copyFileSync(join(Anode, 'keys', 'ca-cert.pem'), join(tmp, 'ca.pem'));
    copyFileSync(join(Anode, 'keys', 'agent-cert.pem'), join(tmp, 'agent.pem'));
    copyFileSync(join(Anode, 'keys', 'agent-key.pem'), join(tmp, 'agent.key'));
    const ng = await startNginx(tmp);
    nginx = ng.proc;
    const out = join(tmp, 'out.bin');
    const curl = [
      'sh',
      '-c',
      `curl -sS --fail --cacert ${tmp}/ca.pem --cert ${tmp}/agent.pem --key ${tmp}/agent.key ` +
        `-o ${out} ${ng.url}/big.bin && sync`,
    ];
    const rows: Array<[string, string[], string | undefined]> = [
      ['depotsync-agent-linux-x64 fetch (WebAssembly BLAKE3)', exeArgv, Aexe],
      ['node bin/depotsync.js agent fetch (native BLAKE3)', nodeArgv, Anode],
      ['curl + sync (nginx, same TLS client certificate)', curl, undefined],
    ];
    const got = rows.map(() => [] as Array<{ wall: number; cpu: number }>);
    for (let run = 0; run < FETCH_RUNS; run++) {
      for (const [i, [, argv, A]] of rows.entries()) {
        rmSync(out, { force: true });
        if (A) rmSync(join(A, 'cache'), { recursive: true, force: true });
        spawnSync('sync');
        warmPageCache(tmp, FETCH_BYTES);
        const r = timed(A ? [...argv, 'fetch', '--dir', A, 'big@1', '--out', out] : argv);
        if (statSync(out).size !== FETCH_BYTES) throw new Error(`${argv.join(' ')}: wrong size`);
        got[i]?.push(r);
      }
    }
    const mibs = FETCH_BYTES / 1048576;
    process.stdout.write(
      `\n\`agent fetch\` of ${mibs} MiB (${FETCH_RUNS} runs each, interleaved; publish ${publishS.toFixed(0)} s, ` +
        `depot sync ${syncS.toFixed(0)} s)\n\n| fetch | wall s: min / median / max | MiB/s (median) | CPU s (median) |\n| --- | ---: | ---: | ---: |\n`,
    );
    const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1] as number;
    for (const [i, [name]] of rows.entries()) {
      const w = (got[i] ?? []).map((r) => r.wall);
      const c = (got[i] ?? []).map((r) => r.cpu);
      process.stdout.write(
        `| ${name} | ${Math.min(...w).toFixed(2)} / ${med(w).toFixed(2)} / ${Math.max(...w).toFixed(2)} | ` +
          `${(mibs / med(w)).toFixed(0)} | ${med(c).toFixed(2)} |\n`,
      );
    }
    process.stdout.write(`\nall runs (wall s): ${JSON.stringify(got.map((g) => g.map((r) => r.wall)))}\n`);
  } finally {
    nginx?.kill();
    await Promise.all(services.map((s) => s.stop()));
    rmSync(tmp, { recursive: true, force: true });
  }
}
