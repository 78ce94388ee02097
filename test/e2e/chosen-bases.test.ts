import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startCountingProxy, type CountingProxy } from '../../bench/lib/counting-proxy.js';
import {
  enrollDepot,
  freePort,
  runJson,
  startService,
  waitForHttps,
  type Service,
} from '../../cli/demo/processes.js';
import { pseudoRandomBytes } from '../helpers/tmp.js';
import { CLI } from '../helpers/cli.js';

/** Delta cache entries (src/deltas/cache.ts) by kind: against chosen bases (`DSCB`), or the pair's. */
function entries(dir: string): { chosen: number; pair: number } {
  const out = { chosen: 0, pair: 0 };
  if (!existsSync(dir)) return out;
  for (const d of readdirSync(dir))
    for (const f of readdirSync(join(dir, d))) {
      const b = readFileSync(join(dir, d, f));
      if (b.length === 0) continue;
      if (b.subarray(0, 4).toString('latin1') === 'DSCB') out.chosen++;
      else out.pair++;
    }
  return out;
}

function agentFetch(args: string[]): { json: any; log: any[] } {
  const r = spawnSync(process.execPath, [CLI, 'agent', 'fetch', ...args, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, DEPOTSYNC_LOG_LEVEL: 'debug' },
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`depotsync agent fetch failed: ${r.stderr}`);
  const log = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { json: JSON.parse(r.stdout.trim().split('\n').pop()!), log };
}

/**
 * Delta bases chosen by content, with real processes: version 2 of a program is version 1 with its
 * halves swapped and an edit every 5 KiB, so every chunk is new and its bytes sit half a file away from
 * where the manifests' pairing looks. The serving master finds where each chunk came from and sends
 * deltas against those chunks (kind 5); depot-a keeps them and serves them to depot-b below it, which
 * serves them to an agent upgrading from version 1; each moves a small fraction of version 2.
 */
describe('delta bases chosen by content (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-chosen-e2e-'));
  const services: Service[] = [];
  let proxy: CountingProxy | undefined;
  afterAll(async () => {
    await proxy?.close();
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('moved code travels master → depot → child depot → agent as deltas against the chunks it came from', async () => {
    const M = join(dir, 'master');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    const config = join(M, 'master.json');
    writeFileSync(
      config,
      JSON.stringify({ ...JSON.parse(readFileSync(config, 'utf8')), deltaLevel: 3, deltaNice: 0 }),
    );
    const half = 1536 * 1024;
    const v1 = pseudoRandomBytes(2 * half, 5);
    const v2 = Buffer.concat([v1.subarray(half), v1.subarray(0, half)]);
    for (let i = 2500; i < v2.length; i += 5 * 1024) v2[i]! ^= 0x3c;
    writeFileSync(join(dir, 'v1.bin'), v1);
    writeFileSync(join(dir, 'v2.bin'), v2);
    runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '1', join(dir, 'v1.bin')]);
    const [mp, ap, bp] = [await freePort(), await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);

    const DA = join(dir, 'depot-a');
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: DA, name: 'depot-a', port: ap });
    runJson(['depot', 'sync', '--dir', DA]);
    let depotA = startService('depot-a', ['depot', 'serve', '--dir', DA]);
    services.push(depotA);
    await waitForHttps(`https://127.0.0.1:${ap}`);
    const DB = join(dir, 'depot-b');
    enrollDepot({
      master: M,
      masterUrl,
      fingerprint: fp,
      dir: DB,
      name: 'depot-b',
      port: bp,
      parent: `https://127.0.0.1:${ap}`,
    });
    runJson(['depot', 'sync', '--dir', DB]);
    let depotB = startService('depot-b', ['depot', 'serve', '--dir', DB]);
    services.push(depotB);
    await waitForHttps(`https://127.0.0.1:${bp}`);
    proxy = await startCountingProxy(bp);
    const A = join(dir, 'agent');
    const token = runJson(['master', 'token', '--dir', M, '--role', 'agent']).token as string;
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
      token,
      '--depot',
      `https://127.0.0.1:${proxy.port}`,
    ]);
    mkdirSync(join(dir, 'out'));
    agentFetch(['--dir', A, 'tool@1', '--out', join(dir, 'out', 'v1')]);
    // The depots' services would sync at the publish, before the deltas are computed (the master then
    // answers with deltas against the pair's window, computed on request): they sync once they are.
    await depotA.stop();
    await depotB.stop();

    runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '2', join(dir, 'v2.bin')]);
    let status: { missing: number; chosen?: number } = { missing: 1 };
    for (let i = 0; i < 120 && status.missing > 0; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      status = runJson(['master', 'deltas', '--dir', M]);
    }
    expect(status.missing).toBe(0);
    const master = entries(join(M, 'deltas'));
    expect(master.chosen).toBeGreaterThan(10);

    // depot-a: 3 MiB of new chunks in a small fraction of their size, the chosen deltas kept.
    const a = runJson(['depot', 'sync', '--dir', DA]);
    expect(a.bytesFetched).toBeLessThan(v2.length / 10);
    expect(entries(join(DA, 'deltas')).chosen).toBeGreaterThan(10);
    depotA = startService('depot-a', ['depot', 'serve', '--dir', DA]);
    services.push(depotA);
    await waitForHttps(`https://127.0.0.1:${ap}`);
    // depot-b: the same deltas from depot-a, which computes nothing.
    const b = runJson(['depot', 'sync', '--dir', DB]);
    expect(b.bytesFetched).toBeLessThan(v2.length / 10);
    expect(entries(join(DB, 'deltas')).chosen).toBeGreaterThan(10);
    depotB = startService('depot-b', ['depot', 'serve', '--dir', DB]);
    services.push(depotB);
    await waitForHttps(`https://127.0.0.1:${bp}`);

    // The agent upgrades from depot-b; the bases are chunks of its version 1 output.
    proxy.reset();
    const a2 = agentFetch(['--dir', A, 'tool@2', '--out', join(dir, 'out', 'v2')]);
    const { up, down } = proxy.counts();
    expect(readFileSync(join(dir, 'out', 'v2')).equals(v2)).toBe(true);
    expect(a2.json.chunksFromDeltas).toBeGreaterThan(10);
    expect(up + down).toBeLessThan(v2.length / 10);
    const d = a2.log.find((l) => l.msg === 'chunks fetched as deltas against the previous version');
    expect(d.refused).toBe(0);
  }, 300_000);
});
