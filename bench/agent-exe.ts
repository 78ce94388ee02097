/**
 * The self-contained agent executables (scripts/package-agent.mjs): their sizes, and start-up time
 * (`version`, best and median of BENCH_RUNS, default 7) of the Linux executable, the project's agent
 * (`node bin/depotsync.js version`, native addons) and the Windows executable under wine (when
 * installed). Builds into .cache/package-agent/bench unless BENCH_AGENT_BUILD names a built folder.
 * The 1 GiB fetch comparison waits for an agent graph without native addons (docs/windows-agent.md).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
