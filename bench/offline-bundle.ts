/**
 * Offline bundle benchmarks, each against a peer measured in the same run:
 *  1. export of a full bundle holding one BENCH_BYTES package (`depotsync master export`, durable) vs
 *     `tar -cf` of the same bytes (and tar -cf + sync); bundle bytes vs package bytes;
 *  2. import of that bundle (`depotsync depot import`: verify, store, switch; durable) vs `tar -xf` into
 *     a folder followed by `sync`; the importing process's peak RSS;
 *  3. a delta bundle after 100 scattered 4 KiB edits: its bytes vs the bytes an online delta sync of
 *     the same change receives (`depotsync depot sync` against `depotsync master serve`);
 *  4. export and import of the same full bundle with `--encrypt` (AES-256-GCM sealed for a second
 *     air-gapped depot's certificate key) vs the plain ones measured in 1 and 2.
 * Every depotsync step runs as its own process through the built CLI, as an operator would run it.
 *
 *   npx tsc -p tsconfig.json && BENCH_BYTES=1073741824 node dist/bench/offline-bundle.js
 * BENCH_RSS_BYTES (optional) adds a separate import of a bundle of that size, plain and --encrypt, for peak RSS.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { warmPageCache } from './lib/page-cache.js';

const BYTES = Number(process.env.BENCH_BYTES ?? 64 * 1024 * 1024);
const RSS_BYTES = Number(process.env.BENCH_RSS_BYTES ?? 0);
const CLI = fileURLToPath(new URL('../../bin/depotsync.js', import.meta.url));
const MiB = 1024 * 1024;

/** BENCH_CLI_PROFILE=DIR: a CPU profile of every depotsync process the benchmark runs (node --cpu-prof). */
const PROFILE = process.env.BENCH_CLI_PROFILE
  ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CLI_PROFILE}`]
  : [];

function cli(args: string[]): { json: any; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [...PROFILE, CLI, ...args, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn' },
    maxBuffer: 64 * MiB,
  });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`depotsync ${args.slice(0, 2).join(' ')} failed: ${r.stderr}`);
  return { json: JSON.parse(r.stdout.trim().split('\n').pop()!), ms };
}

/** A depotsync command under /usr/bin/time: wall time and the process's peak RSS. */
function cliRss(args: string[]): { json: any; ms: number; maxRssKiB: number } {
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'MAXRSS %M', process.execPath, CLI, ...args, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn' },
  });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`depotsync ${args.slice(0, 2).join(' ')} failed: ${r.stderr}`);
  const rss = /MAXRSS (\d+)/.exec(r.stderr);
  return { json: JSON.parse(r.stdout.trim().split('\n').pop()!), ms, maxRssKiB: rss ? Number(rss[1]) : NaN };
}

function timed(cmd: string, args: string[]): number {
  const t0 = performance.now();
  execFileSync(cmd, args, { stdio: 'ignore' });
  return performance.now() - t0;
}

/** Incompressible pseudo-random bytes written in pieces (an installer), and `edits` 4 KiB edits spread over it. */
function writePackage(path: string, bytes: number, seed: number, edits = 0): void {
  const fd = openSync(path, 'w');
  const piece = Buffer.allocUnsafe(8 * MiB);
  let x = seed >>> 0 || 1;
  const stride = edits ? Math.floor(bytes / (edits + 1)) : Infinity;
  for (let off = 0; off < bytes; off += piece.length) {
    const n = Math.min(piece.length, bytes - off);
    for (let i = 0; i + 4 <= n; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      piece.writeUInt32LE(x >>> 0, i);
    }
    for (let k = 1; k <= edits; k++) {
      const at = k * stride - off;
      for (let i = Math.max(0, at); i < Math.min(n, at + 4096); i++) piece[i] = (piece[i]! ^ 0xa5) & 0xff;
    }
    writeSync(fd, piece, 0, n);
  }
  closeSync(fd);
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitHealthy(url: string): Promise<void> {
  const https = await import('node:https');
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((r) =>
      https
        .get(`${url}/healthz`, { rejectUnauthorized: false }, (res) => (res.resume(), r(true)))
        .on('error', () => r(false)),
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not start`);
}

const s = (ms: number) => (ms / 1000).toFixed(2);
const mbps = (bytes: number, ms: number) => (bytes / MiB / (ms / 1000)).toFixed(0);

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'bench-offline-'));
  const M = join(root, 'master');
  const S = join(root, 'ship');
  const O = join(root, 'online');
  let master: ReturnType<typeof spawn> | undefined;
  try {
    const pkg = join(root, 'setup-1.0.bin');
    writePackage(pkg, BYTES, 0x5eed);
    const fp = cli(['master', 'init', '--dir', M]).json.fingerprint as string;
    cli(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.0', pkg]);
    const req = cli([
      'depot',
      'init',
      '--dir',
      S,
      '--offline',
      '--fingerprint',
      fp,
      '--root',
      join(M, '1.root.json'),
      '--name',
      'ship',
    ]).json;
    cli(['master', 'approve', '--dir', M, '--request', req.request, '--out', join(root, 'reply.bundle')]);
    cli(['depot', 'import', '--dir', S, join(root, 'reply.bundle')]);
    const E = join(root, 'sealed');
    const reqE = cli([
      'depot',
      'init',
      '--dir',
      E,
      '--offline',
      '--fingerprint',
      fp,
      '--root',
      join(M, '1.root.json'),
      '--name',
      'sealed',
    ]).json;
    cli([
      'master',
      'approve',
      '--dir',
      M,
      '--request',
      reqE.request,
      '--out',
      join(root, 'reply-sealed.bundle'),
    ]);
    cli(['depot', 'import', '--dir', E, join(root, 'reply-sealed.bundle')]);

    // 1. export vs tar -cf (page cache warmed for both tools: bench/lib/page-cache.ts)
    warmPageCache(root, 4 * BYTES);
    execFileSync('sync');
    const exp = cli(['master', 'export', '--dir', M, '--depot', 'ship', '--out', join(root, 'full.bundle')]);
    const tarC = timed('tar', ['-cf', join(root, 'full.tar'), '-C', root, 'setup-1.0.bin']);
    const tarSync = timed('sync', []);

    // 2. import vs tar -xf + sync
    const imp = cliRss(['depot', 'import', '--dir', S, join(root, 'full.bundle')]);
    mkdirSync(join(root, 'untar'));
    const tarX = timed('sh', ['-c', `tar -xf ${join(root, 'full.tar')} -C ${join(root, 'untar')} && sync`]);
    const bundleBytes = statSync(join(root, 'full.bundle')).size;

    // 4. the same with --encrypt, into a fresh depot
    execFileSync('sync');
    const expE = cli([
      'master',
      'export',
      '--dir',
      M,
      '--depot',
      'sealed',
      '--out',
      join(root, 'sealed.bundle'),
      '--encrypt',
    ]);
    const impE = cliRss(['depot', 'import', '--dir', E, join(root, 'sealed.bundle')]);
    if (impE.json.generation !== 2)
      throw new Error(`encrypted import reached generation ${impE.json.generation}`);
    const sealedBytes = statSync(join(root, 'sealed.bundle')).size;

    // 3. delta: an online depot at generation 2, then 100 scattered 4 KiB edits published as 1.1.
    const port = await freePort();
    master = spawn(process.execPath, [CLI, 'master', 'serve', '--dir', M, '--listen', `127.0.0.1:${port}`], {
      stdio: 'ignore',
      env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'warn' },
    });
    await waitHealthy(`https://127.0.0.1:${port}`);
    const token = cli(['master', 'token', '--dir', M, '--role', 'depot']).json.token as string;
    cli([
      'depot',
      'init',
      '--dir',
      O,
      '--master',
      `https://127.0.0.1:${port}`,
      '--fingerprint',
      fp,
      '--token',
      token,
      '--name',
      'online',
      '--listen',
      '127.0.0.1:0',
    ]);
    cli(['depot', 'sync', '--dir', O]);
    const pkg2 = join(root, 'setup-1.1.bin');
    writePackage(pkg2, BYTES, 0x5eed, 100);
    const pub2 = cli(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.1', pkg2]).json;
    const online = cli(['depot', 'sync', '--dir', O]).json;
    const delta = cli([
      'master',
      'export',
      '--dir',
      M,
      '--depot',
      'ship',
      '--from',
      '2',
      '--out',
      join(root, 'delta.bundle'),
    ]);
    const deltaImp = cli(['depot', 'import', '--dir', S, join(root, 'delta.bundle')]).json;
    if (deltaImp.generation !== 3) throw new Error(`delta import reached generation ${deltaImp.generation}`);

    const rows: string[] = [
      `| measure | depotsync | peer | ratio (goal) |`,
      `|---|---|---|---|`,
      `| export full bundle, ${(BYTES / MiB).toFixed(0)} MiB package (durable) | ${s(exp.ms)} s (${mbps(BYTES, exp.ms)} MiB/s) | tar -cf ${s(tarC)} s; tar -cf + sync ${s(tarC + tarSync)} s | ${(tarC / exp.ms).toFixed(2)} × tar -cf, ${((tarC + tarSync) / exp.ms).toFixed(2)} × tar -cf+sync (≥ 0.8) |`,
      `| import full bundle (verify, store, switch; durable) | ${s(imp.ms)} s (${mbps(BYTES, imp.ms)} MiB/s) | tar -xf + sync ${s(tarX)} s | ${(tarX / imp.ms).toFixed(2)} × (≥ 0.8) |`,
      `| bundle bytes vs package bytes | ${bundleBytes} | ${BYTES} | ${(bundleBytes / BYTES).toFixed(4)} × (≤ 1.01) |`,
      `| import peak RSS | ${(imp.maxRssKiB / 1024).toFixed(0)} MiB | | (< 250 MiB) |`,
      `| export full bundle --encrypt (durable) | ${s(expE.ms)} s (${mbps(BYTES, expE.ms)} MiB/s) | plain export ${s(exp.ms)} s | ${(exp.ms / expE.ms).toFixed(2)} × plain |`,
      `| import full bundle --encrypt (decrypt, verify, store, switch; durable) | ${s(impE.ms)} s (${mbps(BYTES, impE.ms)} MiB/s), peak RSS ${(impE.maxRssKiB / 1024).toFixed(0)} MiB | plain import ${s(imp.ms)} s | ${(imp.ms / impE.ms).toFixed(2)} × plain |`,
      `| encrypted bundle bytes vs plain bundle bytes | ${sealedBytes} | ${bundleBytes} | ${(sealedBytes / bundleBytes).toFixed(5)} × |`,
      `| delta bundle, 100 × 4 KiB edits (${pub2.newChunks} new chunks, ${pub2.newBytes} new bytes) | ${delta.json.bytes} bytes | online delta sync ${online.bytesFetched} bytes | ${(delta.json.bytes / online.bytesFetched).toFixed(3)} × (≤ 1.0) |`,
    ];
    if (RSS_BYTES > 0) {
      const big = join(root, 'big.bin');
      writePackage(big, RSS_BYTES, 0xb16);
      cli(['master', 'publish', '--dir', M, '--name', 'big', '--version', '1.0', big]);
      rmSync(big);
      const bigExp = cli([
        'master',
        'export',
        '--dir',
        M,
        '--depot',
        'ship',
        '--from',
        '3',
        '--out',
        join(root, 'big.bundle'),
      ]);
      const bigImp = cliRss(['depot', 'import', '--dir', S, join(root, 'big.bundle')]);
      rows.push(
        `| import of a ${(bigExp.json.bytes / MiB / 1024).toFixed(2)} GiB bundle: wall, peak RSS | ${s(bigImp.ms)} s, ${(bigImp.maxRssKiB / 1024).toFixed(0)} MiB | | (< 250 MiB) |`,
      );
      // The same content encrypted, into the depot that holds only the first package (generation 2).
      const bigExpE = cli([
        'master',
        'export',
        '--dir',
        M,
        '--depot',
        'sealed',
        '--from',
        '2',
        '--out',
        join(root, 'big-sealed.bundle'),
        '--encrypt',
      ]);
      rmSync(join(root, 'big.bundle'));
      const bigImpE = cliRss(['depot', 'import', '--dir', E, join(root, 'big-sealed.bundle')]);
      rows.push(
        `| import of a ${(bigExpE.json.bytes / MiB / 1024).toFixed(2)} GiB bundle --encrypt: wall, peak RSS | ${s(bigImpE.ms)} s, ${(bigImpE.maxRssKiB / 1024).toFixed(0)} MiB | | (< 250 MiB) |`,
      );
    }
    process.stdout.write(`${rows.join('\n')}\n`);
  } finally {
    master?.kill('SIGTERM');
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
