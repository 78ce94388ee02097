import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
import { pseudoRandomBytes, rebuiltBuild } from '../helpers/tmp.js';
import { CLI } from '../helpers/cli.js';

/** `depotsync agent fetch ... --json` with its log at debug: the answer and the log lines. */
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
 * An agent upgrading with real processes: it fetched version 1 of a binary from a depot; version 2 is a
 * rebuild whose chunk ids all changed. The agent asks the depot for zstd deltas against the old chunks,
 * read back from the version 1 output it wrote, and moves a small fraction of version 2's size, counted
 * on the wire by a proxy between agent and depot.
 */
describe('agent upgrade as version deltas (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-agent-vdelta-e2e-'));
  const services: Service[] = [];
  let proxy: CountingProxy | undefined;
  afterAll(async () => {
    await proxy?.close();
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('the agent fetches v1, then the rebuilt v2 as deltas: a fraction of its size, byte-identical', async () => {
    const M = join(dir, 'master');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    // A fast level at normal priority keeps the test short on a loaded machine.
    const config = join(M, 'master.json');
    writeFileSync(
      config,
      JSON.stringify({ ...JSON.parse(readFileSync(config, 'utf8')), deltaLevel: 3, deltaNice: 0 }),
    );
    const v1 = pseudoRandomBytes(4 * 1024 * 1024, 1);
    const v2 = rebuiltBuild(v1, { seed: 3, edits: 400 });
    writeFileSync(join(dir, 'v1.bin'), v1);
    writeFileSync(join(dir, 'v2.bin'), v2);
    runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '1', join(dir, 'v1.bin')]);
    const [mp, dp] = [await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);
    const D = join(dir, 'depot');
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name: 'depot-1', port: dp });
    runJson(['depot', 'sync', '--dir', D]);
    services.push(startService('depot', ['depot', 'serve', '--dir', D]));
    await waitForHttps(`https://127.0.0.1:${dp}`);
    proxy = await startCountingProxy(dp);

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

    // v2: the master computes its deltas, the depot syncs them (and keeps them to serve agents).
    runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '2', join(dir, 'v2.bin')]);
    let status: { missing: number } = { missing: 1 };
    for (let i = 0; i < 120 && status.missing > 0; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      status = runJson(['master', 'deltas', '--dir', M]);
    }
    expect(status.missing).toBe(0);
    runJson(['depot', 'sync', '--dir', D]);

    proxy.reset();
    const a2 = agentFetch(['--dir', A, 'tool@2', '--out', join(dir, 'out', 'v2')]);
    const { up, down } = proxy.counts();
    expect(readFileSync(join(dir, 'out', 'v2')).equals(v2)).toBe(true);
    expect(a2.json.chunksFromDeltas).toBeGreaterThan(0);
    expect(a2.json.chunksFromDeltas + a2.json.chunksFromOld).toBe(a2.json.chunks);
    // Everything on the wire between agent and depot, TLS and metadata included.
    expect(up + down).toBeLessThan(v2.length / 10);
    const d = a2.log.find((l) => l.msg === 'chunks fetched as deltas against the previous version');
    expect(d.refused).toBe(0);
    expect(d.rebuilt).toBeGreaterThan(0);
  }, 240_000);
});
