/**
 * Real-world deltas: what a depot receives when a package moves to its next release, for consecutive
 * releases of real programs from the npm registry (bench/lib/npm-releases.ts), against the peers a
 * user would otherwise reach for. For each pair, one real master (`depotsync master init/publish/serve`)
 * behind a byte-counting TCP proxy (bench/lib/counting-proxy.ts: every byte both ways, TLS included)
 * and one real depot (`depotsync depot init/sync`), synced to the old release and then to the new one;
 * side by side:
 *  - `rsync -a --checksum --no-whole-file`, plain and `-z`, from an rsync daemon behind the same kind of
 *    proxy, into a copy of the old release (--checksum: npm stamps every file with the same mtime, so
 *    rsync's size+mtime quick check would skip changed files of unchanged size);
 *  - `zstd -19 --long=31 --patch-from=OLD.tar NEW.tar` and `xdelta3 -e -s OLD.tar NEW.tar` (file sizes);
 *  - the full download: the new release's npm tarball (gzip).
 *
 *   npx tsc -p tsconfig.json && bash scripts/bench-deps.sh && node dist/bench/real-delta.js
 * Knobs: BENCH_PAIRS=esbuild,typescript (labels containing these words), BENCH_TMP (default .bench-tmp),
 * BENCH_ZSTD_LEVEL (default 19; level 19 runs at ~1 MB/s: the node pair alone takes minutes).
 * Tarballs are cached in .bench-tmp/real-delta/cache; results also go to .bench-tmp/real-delta/results.json.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { get as httpsGet } from 'node:https';
import { freePort } from './lib/package-depot.js';
import { startCountingProxy, type CountingProxy } from './lib/counting-proxy.js';
import {
  benchTmp,
  npmTarball,
  repoRoot,
  RELEASE_PAIRS,
  treeBytes,
  unpackRelease,
  type ReleasePair,
} from './lib/npm-releases.js';

interface Row {
  pair: ReleasePair;
  newBytes: number;
  tgzBytes: number;
  firstSync: number;
  depot: number;
  depotOwnCount: number;
  depotMs: number;
  rsync: number;
  rsyncZ: number;
  zstdPatch: number;
  zstdMs: number;
  xdelta: number;
}

const execFileAsync = promisify(execFile);
const CLI = join(repoRoot(), 'bin', 'depotsync.js');

// Everything runs asynchronously: the counting proxies live in this process's event loop.
async function sh(cmd: string, args: string[]): Promise<{ ms: number; out: string }> {
  const t0 = performance.now();
  const { stdout } = await execFileAsync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { ms: performance.now() - t0, out: stdout };
}

/** `depotsync ARGS --json`, its last stdout line parsed. */
async function depotsync(args: string[]): Promise<any> {
  try {
    const { out } = await sh(process.execPath, [CLI, ...args, '--json']);
    return JSON.parse(out.trim().split('\n').pop() ?? '{}');
  } catch (e) {
    throw new Error(
      `depotsync ${args.slice(0, 2).join(' ')} failed: ${String((e as { stderr?: string }).stderr ?? e).trim()}`,
    );
  }
}

/** A deterministic tar of `dir` (the tarball's `package/` folder) for the file-level peers. */
async function tarOf(dir: string, out: string): Promise<void> {
  await sh('tar', [
    '--sort=name',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--mtime=@0',
    '-cf',
    out,
    '-C',
    join(dir, '..'),
    'package',
  ]);
}

async function rsyncBytes(
  proxy: CountingProxy,
  module: string,
  from: string,
  to: string,
  oldDir: string,
  z: boolean,
): Promise<number> {
  rmSync(to, { recursive: true, force: true });
  await sh('cp', ['-a', oldDir, to]);
  proxy.reset();
  const args = [
    '-a',
    '--checksum',
    '--no-whole-file',
    ...(z ? ['-z'] : []),
    `rsync://127.0.0.1:${proxy.port}/${module}/${from}/`,
    `${to}/`,
  ];
  await sh('rsync', args);
  const { up, down } = proxy.counts();
  // The copy must now be the new release, or the bytes counted would mean nothing.
  await sh('diff', ['-r', '-q', join(to), join(benchTmp(), 'run', 'x', from)]);
  rmSync(to, { recursive: true, force: true });
  return up + down;
}

/** Until `master deltas` reports none missing (the serving master computes them), in ms. */
async function deltasReady(dir: string): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const r = (await depotsync(['master', 'deltas', '--dir', dir])) as { missing: number };
    if (r.missing === 0) return performance.now() - t0;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** Until the server answers over TLS (any status), at most 30 s. */
async function waitForHealthz(url: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const req = httpsGet(url, { rejectUnauthorized: false, timeout: 1000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer within 30 s`);
}

const ZSTD_LEVEL = Number(process.env.BENCH_ZSTD_LEVEL ?? 19);

/** Printed as each pair completes: a long run that is stopped still leaves its finished rows. */
function printRow(r: Row): void {
  const kb = (n: number) => (n / 1000).toFixed(0);
  const r2 = (a: number, b: number) => (a / b).toFixed(2);
  console.log(
    `| ${r.pair.label} ${r.pair.from} → ${r.pair.to} | ${kb(r.newBytes)} | ${kb(r.tgzBytes)} | ${kb(r.firstSync)} | ${kb(r.depot)} | ${kb(r.rsync)} | ${kb(r.rsyncZ)} | ${kb(r.zstdPatch)} | ${kb(r.xdelta)} | ${r2(r.depot, r.zstdPatch)} | ${r2(r.depot, r.rsyncZ)} | ${r2(r.depot, r.tgzBytes)} |`,
  );
}

async function main(): Promise<void> {
  const words = (process.env.BENCH_PAIRS ?? '')
    .split(',')
    .map((w) => w.trim().toLowerCase())
    .filter(Boolean);
  const pairs = RELEASE_PAIRS.filter(
    (p) => !words.length || words.some((w) => p.label.toLowerCase().includes(w)),
  );
  const run = join(benchTmp(), 'run');
  rmSync(run, { recursive: true, force: true });
  const x = join(run, 'x');
  mkdirSync(x, { recursive: true });
  const services: ChildProcess[] = [];
  const procs: ChildProcess[] = [];
  const proxies: CountingProxy[] = [];
  const rows: Row[] = [];
  try {
    const t0 = performance.now();
    console.log(
      `\n## real-world deltas (node ${process.version}; kB = 1000 B, both directions on the wire; zstd -${ZSTD_LEVEL})\n`,
    );
    console.log(
      '| release pair | new size | npm .tgz | depotsync first sync | depotsync delta sync | rsync | rsync -z | zstd --patch-from | xdelta3 | depot / zstd | depot / rsync -z | depot / .tgz |',
    );
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const p of pairs) {
      unpackRelease(p.name, p.from, x);
      unpackRelease(p.name, p.to, x);
    }
    console.error(`releases unpacked: ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // One master and one depot for all pairs; each pair is a package of its own.
    const M = join(run, 'master');
    const fp = (await depotsync(['master', 'init', '--dir', M])).fingerprint as string;
    const mp = await freePort();
    services.push(
      spawn(process.execPath, [CLI, 'master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`], {
        env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'ignore', 'inherit'],
      }),
    );
    await waitForHealthz(`https://127.0.0.1:${mp}/healthz`);
    const masterProxy = await startCountingProxy(mp);
    proxies.push(masterProxy);
    const D = join(run, 'depot');
    const token = (await depotsync(['master', 'token', '--dir', M, '--role', 'depot'])).token as string;
    await depotsync([
      'depot',
      'init',
      '--dir',
      D,
      '--master',
      `https://127.0.0.1:${masterProxy.port}`,
      '--fingerprint',
      fp,
      '--token',
      token,
      '--name',
      'bench-depot',
      '--listen',
      '127.0.0.1:0',
    ]);

    const rp = await freePort();
    writeFileSync(
      join(run, 'rsyncd.conf'),
      `port = ${rp}\naddress = 127.0.0.1\nuse chroot = no\npid file = ${run}/rsyncd.pid\n[x]\npath = ${x}\nread only = yes\n`,
    );
    procs.push(
      spawn('rsync', ['--daemon', '--no-detach', `--config=${join(run, 'rsyncd.conf')}`], {
        stdio: 'ignore',
      }),
    );
    const rsyncProxy = await startCountingProxy(rp);
    proxies.push(rsyncProxy);
    await new Promise((r) => setTimeout(r, 300));

    for (const p of pairs) {
      const slug = (v: string) => `${p.name.replace(/^@/, '').replace(/\//g, '-')}-${v}`;
      const pkg = slug('').replace(/-$/, '');
      const oldDir = unpackRelease(p.name, p.from, x);
      const newDir = unpackRelease(p.name, p.to, x);
      console.error(`${p.label} ${p.from} → ${p.to}`);

      await depotsync(['master', 'publish', '--dir', M, '--name', pkg, '--version', p.from, oldDir]);
      masterProxy.reset();
      await depotsync(['depot', 'sync', '--dir', D]);
      const first = masterProxy.counts();
      await depotsync(['master', 'publish', '--dir', M, '--name', pkg, '--version', p.to, newDir]);
      // The serving master computes the version deltas in the background; the depot syncs once they
      // are ready (BENCH_DELTAS=request: at once, deltas computed on request).
      const deltasMs = process.env.BENCH_DELTAS === 'request' ? 0 : await deltasReady(M);
      console.error(`  version deltas ready ${(deltasMs / 1000).toFixed(1)} s after the publish`);
      masterProxy.reset();
      const ts = performance.now();
      const res = (await depotsync(['depot', 'sync', '--dir', D])) as { bytesFetched: number };
      const depotMs = performance.now() - ts;
      const d = masterProxy.counts();

      const rsync = await rsyncBytes(
        rsyncProxy,
        'x',
        `${slug(p.to)}/package`,
        join(run, 'rsync-dest'),
        oldDir,
        false,
      );
      const rsyncZ = await rsyncBytes(
        rsyncProxy,
        'x',
        `${slug(p.to)}/package`,
        join(run, 'rsync-dest'),
        oldDir,
        true,
      );

      const oldTar = join(run, 'old.tar');
      const newTar = join(run, 'new.tar');
      await tarOf(oldDir, oldTar);
      await tarOf(newDir, newTar);
      const z = await sh('zstd', [
        '-q',
        '-f',
        `-${ZSTD_LEVEL}`,
        '--long=31',
        `--patch-from=${oldTar}`,
        newTar,
        '-o',
        join(run, 'patch.zst'),
      ]);
      const xd = await sh('xdelta3', ['-e', '-f', '-s', oldTar, newTar, join(run, 'patch.vcdiff')]);
      rows.push({
        pair: p,
        newBytes: treeBytes(newDir),
        tgzBytes: statSync(npmTarball(p.name, p.to)).size,
        firstSync: first.up + first.down,
        depot: d.up + d.down,
        depotOwnCount: res.bytesFetched,
        depotMs,
        rsync,
        rsyncZ,
        zstdPatch: statSync(join(run, 'patch.zst')).size,
        zstdMs: z.ms,
        xdelta: statSync(join(run, 'patch.vcdiff')).size,
      });
      console.error(
        `  depot ${d.up + d.down} B (${(depotMs / 1000).toFixed(1)} s), zstd ${(z.ms / 1000).toFixed(1)} s, xdelta3 ${(xd.ms / 1000).toFixed(1)} s`,
      );
      rmSync(oldTar);
      rmSync(newTar);
      printRow(rows[rows.length - 1]!);
      writeFileSync(
        join(benchTmp(), 'results.json'),
        JSON.stringify({ node: process.version, at: new Date().toISOString(), rows }, null, 2),
      );
    }
    console.error(`total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    console.log(
      "\ndepotsync delta sync, the depot's own count (`depot sync --json` bytesFetched: payload without TLS and HTTP framing), and its wall time:\n",
    );
    for (const r of rows)
      console.log(
        `- ${r.pair.label}: ${r.depotOwnCount} B; ${(r.depotMs / 1000).toFixed(1)} s (zstd --patch-from: ${(r.zstdMs / 1000).toFixed(1)} s)`,
      );
  } finally {
    for (const p of proxies) await p.close();
    for (const p of procs) p.kill();
    await Promise.all(
      services.map((c) =>
        c.exitCode !== null
          ? Promise.resolve()
          : new Promise((resolve) => c.once('exit', resolve).kill('SIGTERM')),
      ),
    );
    if (!process.env.BENCH_KEEP) rmSync(run, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
