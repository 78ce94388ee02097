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
 * And an agent that fetched the old release from the depot (`depotsync agent fetch`) upgrading to the new
 * one, counted the same way by a proxy in front of `depot serve`.
 *
 *   npx tsc -p tsconfig.json && bash scripts/bench-deps.sh && node dist/bench/real-delta.js
 * Knobs: BENCH_PAIRS=esbuild,typescript (labels containing these words), BENCH_TMP (default .bench-tmp),
 * BENCH_ZSTD_LEVEL (default 19; level 19 runs at ~1 MB/s: the node pair alone takes minutes),
 * BENCH_PEERS=fresh (measure the peers again instead of taking their cached results).
 * Tarballs and the peers' results (by pair, tool and level: peers.json) are cached in
 * .bench-tmp/real-delta/cache, so a run after a change to depotsync measures only depotsync's side;
 * results also go to .bench-tmp/real-delta/results.json.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
  /** The first sync's own counts (its manifests step: the old release's manifest, whole). */
  firstOwn: Record<string, number>;
  /** Both directions on the wire (the proxy), TLS and HTTP included. */
  depot: number;
  /** The byte counts `depot sync --json` reports about itself (payload, and plain where it says). */
  depotOwn: Record<string, number>;
  depotMs: number;
  /** The agent upgrading from the old release to the new one: both directions between agent and depot. */
  agent: number;
  agentOwn: Record<string, number>;
  agentSources: string[];
  agentMs: number;
  rsync: number;
  rsyncZ: number;
  zstdPatch: number;
  zstdMs: number;
  xdelta: number;
}

/** Results of the peers (they do not change with depotsync), by pair, tool and level. */
interface PeerResult {
  bytes: number;
  ms: number;
}
const PEER_CACHE = () => join(benchTmp(), 'cache', 'peers.json');

function loadPeerCache(): Record<string, PeerResult> {
  if (process.env.BENCH_PEERS === 'fresh' || !existsSync(PEER_CACHE())) return {};
  return JSON.parse(readFileSync(PEER_CACHE(), 'utf8')) as Record<string, PeerResult>;
}

function peerKey(p: ReleasePair, tool: string): string {
  return `${p.name} ${p.from} -> ${p.to} ${tool}`;
}

/** Every numeric field of a `--json` answer whose name speaks of bytes (bytesFetched, plainBytes, ...). */
function byteFields(json: Record<string, unknown>, prefix = ''): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(json)) {
    // Inside an object named for bytes (bytesByStep), every number is bytes.
    if (typeof v === 'number' && (prefix || /bytes/i.test(k))) out[prefix + k] = v;
    else if (v && typeof v === 'object' && !Array.isArray(v) && /bytes/i.test(k))
      Object.assign(out, byteFields(v as Record<string, unknown>, `${prefix}${k}.`));
  }
  return out;
}

const execFileAsync = promisify(execFile);
const CLI = join(repoRoot(), 'bin', 'depotsync.js');

// Everything runs asynchronously: the counting proxies live in this process's event loop.
async function sh(
  cmd: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
): Promise<{ ms: number; out: string; err: string }> {
  const t0 = performance.now();
  const { stdout, stderr } = await execFileAsync(cmd, args, {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    ...(env ? { env } : {}),
  });
  return { ms: performance.now() - t0, out: stdout, err: stderr };
}

/**
 * `agent fetch --json` with its debug log: the `manifest rebuilt from a delta` line gives the bytes the
 * manifest took and its length (`manifestBytes.delta`, `manifestBytes.whole`).
 */
async function agentFetch(dir: string, ref: string, out: string): Promise<Record<string, unknown>> {
  const { out: stdout, err } = await sh(
    process.execPath,
    [CLI, 'agent', 'fetch', '--dir', dir, ref, '--out', out, '--json'],
    { ...process.env, DEPOTSYNC_LOG_LEVEL: 'debug' },
  );
  const json = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  for (const line of err.split('\n')) {
    if (TRACE) traceLine(line, 'agent');
    if (!line.includes('manifest rebuilt from a delta')) continue;
    const l = JSON.parse(line) as { wireBytes: number; length: number };
    json.manifestBytes = { delta: l.wireBytes, whole: l.length };
  }
  return json;
}

/**
 * `depot sync --json` with its info log: the log's `sync done` line carries the bytes of each step
 * (metadata, manifests, chunks, deltas), which the JSON answer does not.
 */
async function depotSync(dir: string): Promise<Record<string, unknown>> {
  const { out, err } = await sh(process.execPath, [CLI, 'depot', 'sync', '--dir', dir, '--json'], {
    ...process.env,
    DEPOTSYNC_LOG_LEVEL: TRACE ? 'debug' : 'info',
  });
  const json = JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
  for (const line of err.split('\n')) {
    if (TRACE) traceLine(line, 'depot');
    if (!line.includes('"sync done')) continue;
    const done = JSON.parse(line) as { bytesByStep?: Record<string, number> };
    if (done.bytesByStep) json.bytesByStep = done.bytesByStep;
  }
  return json;
}

/** BENCH_TRACE=1: each response the depot and agent receive (path, status, body bytes), and the connections. */
const TRACE = process.env.BENCH_TRACE === '1';

function traceLine(line: string, who: string): void {
  if (!line.includes('"response body done')) return;
  const l = JSON.parse(line) as { method: string; url: string; status: number; bytes: number };
  const path = new URL(l.url).pathname;
  // The first sync's 256 bins (version 1) say nothing new: one line for them.
  if (/^\/v1\/metadata\/1\.bin-/.test(path) && !path.endsWith('-00.json')) return;
  console.error(
    `    ${who}: ${l.method} ${path.length > 90 ? `${path.slice(0, 60)}…` : path} ${l.status}: ${l.bytes} B body`,
  );
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

/** The issue's goals, on every pair: wire bytes at most these multiples of each peer. */
const GOALS = { zstd: 1.3, rsyncZ: 0.5, tgz: 1 } as const;

/** `0.84 ✓` when the ratio meets its goal, `2.87 ✗` when not. */
function goal(a: number, b: number, limit: number): string {
  const r = a / b;
  return `${r.toFixed(2)} ${r <= limit ? '✓' : '✗'}`;
}

/** Printed as each pair completes: a long run that is stopped still leaves its finished rows. */
function printRow(r: Row): void {
  const kb = (n: number) => (n / 1000).toFixed(0);
  console.log(
    `| ${r.pair.label} ${r.pair.from} → ${r.pair.to} | ${kb(r.newBytes)} | ${kb(r.tgzBytes)} | ${kb(r.firstSync)} | ${kb(r.depot)} | ${kb(r.agent)} | ${kb(r.rsync)} | ${kb(r.rsyncZ)} | ${kb(r.zstdPatch)} | ${kb(r.xdelta)} | ${goal(r.depot, r.zstdPatch, GOALS.zstd)} | ${goal(r.depot, r.rsyncZ, GOALS.rsyncZ)} | ${goal(r.depot, r.tgzBytes, GOALS.tgz)} | ${goal(r.agent, r.tgzBytes, GOALS.tgz)} |`,
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
      `| release pair | new size | npm .tgz | depotsync first sync | depot delta sync | agent upgrade | rsync | rsync -z | zstd --patch-from | xdelta3 | depot / zstd ≤ ${GOALS.zstd} | depot / rsync -z ≤ ${GOALS.rsyncZ} | depot / .tgz ≤ ${GOALS.tgz} | agent / .tgz ≤ ${GOALS.tgz} |`,
    );
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
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
    const dp = await freePort();
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
      `127.0.0.1:${dp}`,
    ]);
    // The agent reaches the depot through a counting proxy (the port stays while depot serve restarts).
    const depotProxy = await startCountingProxy(dp);
    proxies.push(depotProxy);
    const A = join(run, 'agent');
    const agentToken = (await depotsync(['master', 'token', '--dir', M, '--role', 'agent'])).token as string;
    await depotsync([
      'agent',
      'init',
      '--dir',
      A,
      '--master',
      `https://127.0.0.1:${masterProxy.port}`,
      '--fingerprint',
      fp,
      '--token',
      agentToken,
      '--depot',
      `https://127.0.0.1:${depotProxy.port}`,
    ]);
    const peers = loadPeerCache();
    const peer = async (
      p: ReleasePair,
      tool: string,
      run: () => Promise<PeerResult>,
    ): Promise<PeerResult> => {
      const key = peerKey(p, tool);
      const hit = peers[key];
      if (hit) return hit;
      const got = await run();
      peers[key] = got;
      mkdirSync(join(benchTmp(), 'cache'), { recursive: true });
      writeFileSync(PEER_CACHE(), JSON.stringify(peers, null, 2));
      return got;
    };

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
      const firstRes = await depotSync(D);
      const first = masterProxy.counts();
      await depotsync(['master', 'publish', '--dir', M, '--name', pkg, '--version', p.to, newDir]);
      // The serving master computes the version deltas in the background; the depot syncs once they
      // are ready (BENCH_DELTAS=request: at once, deltas computed on request).
      const deltasMs = process.env.BENCH_DELTAS === 'request' ? 0 : await deltasReady(M);
      console.error(`  version deltas ready ${(deltasMs / 1000).toFixed(1)} s after the publish`);
      masterProxy.reset();
      const ts = performance.now();
      const res = await depotSync(D);
      const depotMs = performance.now() - ts;
      const d = masterProxy.counts();
      if (TRACE) console.error(`    ${d.connections} connections, ${d.up} B up, ${d.down} B down`);

      // The agent: the old release fetched from the depot, then the new one, counted between them.
      const depotService = spawn(process.execPath, [CLI, 'depot', 'serve', '--dir', D], {
        env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      services.push(depotService);
      let agent: { wire: number; own: Record<string, number>; sources: string[]; ms: number };
      try {
        await waitForHealthz(`https://127.0.0.1:${dp}/healthz`);
        const outs = join(run, 'agent-out');
        rmSync(outs, { recursive: true, force: true });
        mkdirSync(outs, { recursive: true });
        await depotsync(['agent', 'fetch', '--dir', A, `${pkg}@${p.from}`, '--out', join(outs, 'old')]);
        depotProxy.reset();
        const ta = performance.now();
        const ar = await agentFetch(A, `${pkg}@${p.to}`, join(outs, 'new'));
        const ac = depotProxy.counts();
        if (TRACE)
          console.error(`    agent: ${ac.connections} connections, ${ac.up} B up, ${ac.down} B down`);
        await sh('diff', ['-r', '-q', join(outs, 'new'), newDir]);
        agent = {
          wire: ac.up + ac.down,
          own: byteFields(ar),
          sources: (ar.source as string[]) ?? [],
          ms: performance.now() - ta,
        };
        rmSync(outs, { recursive: true, force: true });
      } finally {
        if (depotService.exitCode === null)
          await new Promise((resolve) => depotService.once('exit', resolve).kill('SIGTERM'));
        services.splice(services.indexOf(depotService), 1);
      }

      const rsync = (
        await peer(p, 'rsync', async () => {
          const t = performance.now();
          const bytes = await rsyncBytes(
            rsyncProxy,
            'x',
            `${slug(p.to)}/package`,
            join(run, 'rsync-dest'),
            oldDir,
            false,
          );
          return { bytes, ms: performance.now() - t };
        })
      ).bytes;
      const rsyncZ = (
        await peer(p, 'rsync -z', async () => {
          const t = performance.now();
          const bytes = await rsyncBytes(
            rsyncProxy,
            'x',
            `${slug(p.to)}/package`,
            join(run, 'rsync-dest'),
            oldDir,
            true,
          );
          return { bytes, ms: performance.now() - t };
        })
      ).bytes;

      const oldTar = join(run, 'old.tar');
      const newTar = join(run, 'new.tar');
      const tars = async () => {
        if (existsSync(newTar)) return;
        await tarOf(oldDir, oldTar);
        await tarOf(newDir, newTar);
      };
      const z = await peer(p, `zstd --patch-from -${ZSTD_LEVEL}`, async () => {
        await tars();
        const r = await sh('zstd', [
          '-q',
          '-f',
          `-${ZSTD_LEVEL}`,
          '--long=31',
          `--patch-from=${oldTar}`,
          newTar,
          '-o',
          join(run, 'patch.zst'),
        ]);
        return { bytes: statSync(join(run, 'patch.zst')).size, ms: r.ms };
      });
      const xd = await peer(p, 'xdelta3', async () => {
        await tars();
        const r = await sh('xdelta3', ['-e', '-f', '-s', oldTar, newTar, join(run, 'patch.vcdiff')]);
        return { bytes: statSync(join(run, 'patch.vcdiff')).size, ms: r.ms };
      });
      rows.push({
        pair: p,
        newBytes: treeBytes(newDir),
        tgzBytes: statSync(npmTarball(p.name, p.to)).size,
        firstSync: first.up + first.down,
        firstOwn: byteFields(firstRes),
        depot: d.up + d.down,
        depotOwn: byteFields(res),
        depotMs,
        agent: agent.wire,
        agentOwn: agent.own,
        agentSources: agent.sources,
        agentMs: agent.ms,
        rsync,
        rsyncZ,
        zstdPatch: z.bytes,
        zstdMs: z.ms,
        xdelta: xd.bytes,
      });
      console.error(
        `  depot ${d.up + d.down} B (${(depotMs / 1000).toFixed(1)} s), agent ${agent.wire} B (${(agent.ms / 1000).toFixed(1)} s), zstd ${(z.ms / 1000).toFixed(1)} s, xdelta3 ${(xd.ms / 1000).toFixed(1)} s`,
      );
      rmSync(oldTar, { force: true });
      rmSync(newTar, { force: true });
      printRow(rows[rows.length - 1]!);
      writeFileSync(
        join(benchTmp(), 'results.json'),
        JSON.stringify({ node: process.version, at: new Date().toISOString(), rows }, null, 2),
      );
    }
    console.error(`total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    console.log(
      "\nWire bytes above (the proxies: TLS and HTTP included); below, what depotsync's `--json` reports about itself (payload without TLS and HTTP framing; plain bytes where it reports them), and wall times:\n",
    );
    const own = (o: Record<string, number>) =>
      Object.entries(o)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
    for (const r of rows)
      console.log(
        `- ${r.pair.label}: first sync ${own(r.firstOwn)}. delta sync ${own(r.depotOwn)}; ${(r.depotMs / 1000).toFixed(1)} s (zstd --patch-from: ${(r.zstdMs / 1000).toFixed(1)} s). agent fetch from ${r.agentSources.join(', ')}: ${own(r.agentOwn)}; ${(r.agentMs / 1000).toFixed(1)} s`,
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
