/**
 * kill -9 at random instants across real processes, with the invariants checked after every kill:
 *   - no acknowledged publish lost (every `master publish` that exited 0 is in the catalog);
 *   - `PRAGMA integrity_check` is ok on the master's, each depot's and the agent's database;
 *   - a depot serves only complete, verified generations (every chunk of the served targets re-hashed);
 *   - an agent's output path holds the old or the new version, byte for byte, and nothing else;
 *   - once a killed command ran again to completion, no staging or temporary files are left behind.
 * Processes killed: `master publish`, `master serve` (while a depot syncs from it), `depot serve` (while
 * an agent fetches from it), `depot sync`, `depot import` and `agent fetch`; each is restarted or run
 * again. The instant is uniform over twice the command's measured duration, so kills land in every phase
 * and about half the runs complete (acknowledged publishes, whole fetches).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/kill-loop.js
 * Knobs: KILLS (1000), KILL_SEED (1), KILL_DIR (a new temporary folder, removed at the end unless given).
 * test/e2e/kill-loop.test.ts runs a short version.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import { freePort, runJson, startService, waitForHttps, type Service } from '../cli/demo/processes.js';
import { decodeManifest, uniqueChunkIds } from '../src/content/manifest.js';
import { silentLogger } from '../src/log.js';
import { openDepot } from '../depot/depot.js';
import { STAGING_MARK } from '../agent/fetch/staging.js';
import { FileAgentState } from '../agent/state.js';
import { openMasterDatabase } from '../master/db/database.js';
import { findVersion } from '../master/db/catalog.js';

/** bin/depotsync.js above this module: it runs from dist/bench (built) and from bench/ (vitest). */
const CLI = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++, dir = dirname(dir))
    if (existsSync(join(dir, 'bin', 'depotsync.js')) && existsSync(join(dir, 'package.json')))
      return join(dir, 'bin', 'depotsync.js');
  throw new Error('kill-loop: cannot find bin/depotsync.js above this module');
})();
const KIND = ['publish', 'master-serve', 'depot-serve', 'depot-sync', 'depot-import', 'agent-fetch'] as const;
type Kind = (typeof KIND)[number];

export interface KillLoopResult {
  kills: number;
  byKind: Record<Kind, number>;
  checks: number;
  failures: string[];
  acknowledgedPublishes: number;
  durationMs: number;
}

/** A small deterministic generator (mulberry32), so a failing run can be replayed with its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }>;
}

function run(args: string[]): Run {
  const t0 = performance.now();
  const child = spawn(process.execPath, [CLI, ...args, '--json'], {
    env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{
    code: number | null;
    signal: string | null;
    stdout: string;
    stderr: string;
    ms: number;
  }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 })),
  );
  return { child, done };
}

export async function runKillLoop(o: {
  kills: number;
  seed?: number;
  dir?: string;
  log?: (line: string) => void;
}): Promise<KillLoopResult> {
  const random = rng(o.seed ?? 1);
  const log = o.log ?? (() => undefined);
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'depotsync-kill-loop-'));
  mkdirSync(dir, { recursive: true });
  const M = join(dir, 'master');
  const D = join(dir, 'depot-serve');
  const D2 = join(dir, 'depot-sync');
  const D3 = join(dir, 'depot-import');
  const A = join(dir, 'agent');
  const OUT = join(dir, 'out', 'pkg.bin');
  mkdirSync(join(dir, 'out'), { recursive: true });
  const services: Partial<Record<'master' | 'depot', Service>> = {};
  const result: KillLoopResult = {
    kills: 0,
    byKind: Object.fromEntries(KIND.map((k) => [k, 0])) as Record<Kind, number>,
    checks: 0,
    failures: [],
    acknowledgedPublishes: 0,
    durationMs: 0,
  };
  const t0 = performance.now();
  const fail = (what: string) => {
    result.failures.push(what);
    log(`FAIL ${what}`);
  };

  // Versions share a base, so the catalog stays small however many are published.
  const base = Buffer.alloc(768 * 1024);
  for (let i = 0; i < base.length; i += 4) base.writeUInt32LE((random() * 2 ** 32) >>> 0, i);
  let nextVersion = 1;
  const attempted = new Map<string, string>(); // version -> sha256 of its content
  const acked = new Map<string, string>(); // version -> manifest id
  function newContent(): { version: string; file: string } {
    const version = `1.${nextVersion++}`;
    const b = Buffer.from(base);
    for (let e = 0; e < 3; e++)
      b.write(`${version}:${random()}`.padEnd(4096, '#'), Math.floor(random() * (b.length - 4096)));
    const file = join(dir, `pkg-${version}.bin`);
    writeFileSync(file, b);
    attempted.set(version, sha(b));
    return { version, file };
  }

  const mp = await freePort();
  const dp = await freePort();
  const masterUrl = `https://127.0.0.1:${mp}`;
  const depotUrl = `https://127.0.0.1:${dp}`;
  const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
  const first = newContent();
  acked.set(
    first.version,
    runJson(['master', 'publish', '--dir', M, '--name', 'pkg', '--version', first.version, first.file])
      .id as string,
  );
  const startMaster = async () => {
    services.master = startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]);
    await waitForHttps(masterUrl, 60_000);
  };
  const startDepot = async () => {
    services.depot = startService('depot', ['depot', 'serve', '--dir', D]);
    await waitForHttps(depotUrl, 60_000);
  };
  await startMaster();
  const token = (role: string) => runJson(['master', 'token', '--dir', M, '--role', role]).token as string;
  runJson([
    'depot',
    'init',
    '--dir',
    D,
    '--master',
    masterUrl,
    '--fingerprint',
    fp,
    '--token',
    token('depot'),
    '--name',
    'kd-serve',
    '--listen',
    `127.0.0.1:${dp}`,
    '--host',
    '127.0.0.1',
  ]);
  runJson([
    'depot',
    'init',
    '--dir',
    D2,
    '--master',
    masterUrl,
    '--fingerprint',
    fp,
    '--token',
    token('depot'),
    '--name',
    'kd-sync',
    '--listen',
    '127.0.0.1:1',
  ]);
  runJson([
    'depot',
    'init',
    '--dir',
    D3,
    '--master',
    masterUrl,
    '--fingerprint',
    fp,
    '--token',
    token('depot'),
    '--name',
    'kd-import',
    '--listen',
    '127.0.0.1:1',
  ]);
  runJson(['depot', 'sync', '--dir', D]);
  await startDepot();
  runJson([
    'agent',
    'init',
    '--dir',
    A,
    '--master',
    masterUrl,
    '--fingerprint',
    fp,
    '--token',
    token('agent'),
    '--depot',
    depotUrl,
    '--name',
    'ka',
  ]);

  // Measured durations (ms) per command: kills land uniformly within them.
  const took: Record<string, number> = {
    publish: 1500,
    'depot-sync': 1500,
    'depot-import': 1500,
    'agent-fetch': 1500,
  };
  const learn = (k: string, ms: number) => (took[k] = 0.7 * took[k]! + 0.3 * ms);
  let outHash: string | undefined;

  /** Start `args`, SIGKILL it after a random share of its usual duration; returns how it ended. */
  async function runAndKill(k: string, args: string[]) {
    const r = run(args);
    // Up to twice the usual duration: about half the runs finish (and teach the duration), half are killed.
    const at = random() * 2 * took[k]!;
    const timer = setTimeout(() => r.child.kill('SIGKILL'), at);
    const end = await r.done;
    clearTimeout(timer);
    if (end.signal !== 'SIGKILL' && end.code === 0) learn(k, end.ms);
    // Killed: it takes longer than that, so aim a little later next time (else a slow host never sees one finish).
    else if (end.signal === 'SIGKILL') took[k] = took[k]! * 1.1;
    return end;
  }

  /** kill -9 a running service and wait until it is gone. */
  async function killService(service: { child: ChildProcess }): Promise<void> {
    const c = service.child;
    c.kill('SIGKILL');
    if (c.exitCode === null && c.signalCode === null) await new Promise((res) => c.once('exit', res));
    result.kills++;
  }

  // ---- invariants ----------------------------------------------------------------------------
  function integrity(file: string, what: string): void {
    if (!existsSync(file)) return;
    result.checks++;
    const db = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
    try {
      const r = db.pragma('integrity_check', { simple: true });
      if (r !== 'ok') fail(`${what}: integrity_check says ${String(r)}`);
    } finally {
      db.close();
    }
  }
  /** The agent's state file (replaced atomically) must parse after any kill. */
  function agentStateReadable(): void {
    if (!existsSync(join(A, 'state.json'))) return;
    result.checks++;
    try {
      FileAgentState.open(join(A, 'state.json'), silentLogger()).close();
    } catch (e) {
      fail(`agent state: ${(e as Error).message}`);
    }
  }
  async function publishesKept(): Promise<void> {
    result.checks++;
    const m = openMasterDatabase(join(M, 'master.db'), { logger: silentLogger() });
    try {
      for (const [version, id] of acked) {
        const v = await findVersion(m, 'pkg', version);
        if (!v || v.manifestId !== id)
          fail(
            `acknowledged publish pkg@${version} (${id.slice(0, 12)}) is ${v ? `now ${v.manifestId.slice(0, 12)}` : 'missing'}`,
          );
      }
    } finally {
      await m.close();
    }
  }
  async function servedComplete(dirOf: string, what: string): Promise<void> {
    result.checks++;
    const d = openDepot(dirOf, { logger: silentLogger() });
    try {
      if (!d.db.served()) return;
      for (const t of d.db.liveTargets(['served'])) {
        for (const id of uniqueChunkIds(decodeManifest(t.bytes))) {
          await d.store
            .get(id, { verify: true })
            .catch((e: unknown) =>
              fail(
                `${what}: served generation ${d.db.served()!.generation} lacks a good chunk ${id.slice(0, 12)}: ${(e as Error).message}`,
              ),
            );
        }
      }
    } finally {
      await d.close();
    }
  }
  function outputIsOldOrNew(before: string | undefined): void {
    result.checks++;
    const names = readdirSync(join(dir, 'out')).filter((n) => !n.includes(STAGING_MARK));
    const extra = names.filter((n) => n !== 'pkg.bin');
    if (extra.length) fail(`agent output folder holds ${extra.join(', ')} besides pkg.bin`);
    if (!existsSync(OUT)) {
      if (before !== undefined) fail('agent output pkg.bin disappeared');
      return;
    }
    const h = sha(readFileSync(OUT));
    const known = [...attempted.values()].includes(h);
    if (h !== before && !known)
      fail(`agent output pkg.bin is neither the old version nor a published one (sha256 ${h.slice(0, 12)})`);
    outHash = h;
  }
  function noStaging(where: string, names: string[]): void {
    result.checks++;
    const left = names.filter((n) => n.includes(STAGING_MARK) || n.endsWith('.tmp'));
    if (left.length) fail(`${where}: left behind after recovery: ${left.join(', ')}`);
  }
  function filesUnder(root: string): string[] {
    const out: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else out.push(join(d, e.name).slice(root.length + 1));
      }
    };
    if (existsSync(root)) walk(root);
    return out;
  }

  // ---- the loop ------------------------------------------------------------------------------
  try {
    while (result.kills < o.kills) {
      const kind = KIND[Math.floor(random() * KIND.length)]!;
      switch (kind) {
        case 'publish': {
          const { version, file } = newContent();
          const end = await runAndKill('publish', [
            'master',
            'publish',
            '--dir',
            M,
            '--name',
            'pkg',
            '--version',
            version,
            file,
          ]);
          if (end.code === 0)
            acked.set(version, JSON.parse(end.stdout.trim().split('\n').pop()!).id as string);
          else if (end.signal !== 'SIGKILL')
            fail(`master publish ${version} failed without a kill: ${end.stderr.trim()}`);
          if (end.signal === 'SIGKILL') result.kills++;
          // A publish killed after its commit may be in the catalog: either way, the catalog stays whole.
          break;
        }
        case 'depot-sync':
        case 'master-serve': {
          const args = ['depot', 'sync', '--dir', D2];
          if (kind === 'master-serve') {
            const r = run(args);
            await Promise.race([sleep(random() * 2 * took['depot-sync']!), r.done]);
            await killService(services.master!);
            await startMaster();
            await r.done;
          } else {
            const end = await runAndKill('depot-sync', args);
            if (end.signal === 'SIGKILL') result.kills++;
            else if (end.code !== 0) fail(`depot sync failed without a kill: ${end.stderr.trim()}`);
          }
          await servedComplete(D2, 'depot kd-sync');
          integrity(join(D2, 'depot.db'), 'depot kd-sync');
          break;
        }
        case 'depot-import': {
          const bundle = join(dir, 'kd-import.bundle');
          rmSync(bundle, { force: true });
          runJson(['master', 'export', '--dir', M, '--depot', 'kd-import', '--out', bundle]);
          const end = await runAndKill('depot-import', ['depot', 'import', '--dir', D3, bundle]);
          if (end.signal === 'SIGKILL') result.kills++;
          else if (end.code !== 0) fail(`depot import failed without a kill: ${end.stderr.trim()}`);
          await servedComplete(D3, 'depot kd-import');
          integrity(join(D3, 'depot.db'), 'depot kd-import');
          break;
        }
        case 'depot-serve':
        case 'agent-fetch': {
          const before = outHash;
          const args = ['agent', 'fetch', '--dir', A, 'pkg', '--out', OUT];
          if (kind === 'depot-serve') {
            const r = run(args);
            await Promise.race([sleep(random() * 2 * took['agent-fetch']!), r.done]);
            await killService(services.depot!);
            await servedComplete(D, 'depot kd-serve');
            integrity(join(D, 'depot.db'), 'depot kd-serve');
            await startDepot();
            await r.done;
          } else {
            const end = await runAndKill('agent-fetch', args);
            if (end.signal === 'SIGKILL') result.kills++;
            else if (end.code !== 0) fail(`agent fetch failed without a kill: ${end.stderr.trim()}`);
          }
          outputIsOldOrNew(before);
          agentStateReadable();
          break;
        }
      }
      result.byKind[kind]++;
      await publishesKept();
      integrity(join(M, 'master.db'), 'master');
      // Recovery every few kills: each command once more to completion, then nothing may be left over.
      if (result.kills % 10 === 0) {
        const sync = await run(['depot', 'sync', '--dir', D2]).done;
        if (sync.code !== 0) fail(`depot sync after kills: ${sync.stderr.trim()}`);
        const fetch = await run(['agent', 'fetch', '--dir', A, 'pkg', '--out', OUT]).done;
        if (fetch.code !== 0) fail(`agent fetch after kills: ${fetch.stderr.trim()}`);
        else outputIsOldOrNew(outHash);
        noStaging('agent output folder', readdirSync(join(dir, 'out')));
        noStaging('depot kd-sync', filesUnder(D2));
        noStaging('depot kd-import', filesUnder(D3));
        noStaging(
          'master',
          filesUnder(M).filter((f) => !f.startsWith('dropbox')),
        );
      }
      if (result.kills % 25 === 0)
        log(
          `${result.kills} kills, ${result.checks} checks, ${result.failures.length} failures, ${acked.size} publishes acknowledged`,
        );
    }
  } finally {
    await services.depot?.stop();
    await services.master?.stop();
    result.acknowledgedPublishes = acked.size;
    result.durationMs = Math.round(performance.now() - t0);
    if (!o.dir) rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const kills = Number(process.env.KILLS ?? 1000);
  const r = await runKillLoop({
    kills,
    seed: Number(process.env.KILL_SEED ?? 1),
    ...(process.env.KILL_DIR ? { dir: process.env.KILL_DIR } : {}),
    log: (l) => console.log(`${new Date().toISOString().slice(11, 19)} ${l}`),
  });
  console.log(JSON.stringify(r, null, 2));
  process.exitCode = r.failures.length ? 1 : 0;
}
