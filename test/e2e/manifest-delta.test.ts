import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  enrollDepot,
  freePort,
  runJson,
  startService,
  waitForHttps,
  type Service,
} from '../../cli/demo/processes.js';
import { CLI } from '../helpers/cli.js';
import { pseudoRandomBytes } from '../helpers/tmp.js';

/** `depotsync ARGS --json` with its log at `level`: the parsed answer and the log lines. */
function runLogged(args: string[], level: string): { json: any; log: any[] } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, DEPOTSYNC_LOG_LEVEL: level },
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`depotsync ${args.slice(0, 2).join(' ')} failed: ${r.stderr}`);
  const log = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { json: JSON.parse(r.stdout.trim().split('\n').pop()!), log };
}

/** The bytes of each step of a `depot sync` (its `sync done` log line). */
function syncSteps(dir: string): Record<string, number> {
  const { log } = runLogged(['depot', 'sync', '--dir', dir], 'info');
  const done = log.find((l) => String(l.msg).startsWith('sync done'));
  expect(done).toBeDefined();
  return done.bytesByStep as Record<string, number>;
}

/**
 * Manifest deltas with real processes: a depot syncing the next version of a package from the master
 * receives its manifest as a delta against the previous one (a fraction of the manifest's bytes), and
 * an agent upgrading from a depot does the same, the depot serving the delta.
 */
describe('manifest deltas (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-mdelta-e2e-'));
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('depot sync and agent fetch of the next version move a fraction of the manifest', async () => {
    const M = join(dir, 'master');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    const v1 = pseudoRandomBytes(24_000_000, 5);
    const v2 = Buffer.from(v1);
    for (const at of [1_000_000, 12_000_000, 23_000_000]) pseudoRandomBytes(200, at).copy(v2, at);
    writeFileSync(join(dir, 'v1.bin'), v1);
    writeFileSync(join(dir, 'v2.bin'), v2);
    runJson(['master', 'publish', '--dir', M, '--name', 'app', '--version', '1.0', join(dir, 'v1.bin')]);
    const [mp, dp] = [await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);

    const D = join(dir, 'depot');
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: D, name: 'depot-1', port: dp });
    const first = syncSteps(D);
    // The whole manifest of version 1 (no earlier version to start from).
    expect(first.manifests).toBeGreaterThan(10_000);

    runJson(['master', 'publish', '--dir', M, '--name', 'app', '--version', '1.1', join(dir, 'v2.bin')]);
    const second = syncSteps(D);
    expect(second.manifests).toBeGreaterThan(0);
    expect(second.manifests!).toBeLessThan(first.manifests! / 10);

    // The agent: version 1.0, then 1.1 from the depot, whose manifest is a delta the depot serves.
    services.push(startService('depot', ['depot', 'serve', '--dir', D]));
    await waitForHttps(`https://127.0.0.1:${dp}`);
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
      `https://127.0.0.1:${dp}`,
    ]);
    mkdirSync(join(dir, 'out'));
    const a1 = runLogged(
      ['agent', 'fetch', '--dir', A, 'app@1.0', '--out', join(dir, 'out', '1.0')],
      'debug',
    );
    expect(a1.log.some((l) => l.msg === 'manifest rebuilt from a delta')).toBe(false);
    expect(readdirSync(join(A, 'manifests')).filter((f) => f.endsWith('.json'))).toHaveLength(1);
    const a2 = runLogged(
      ['agent', 'fetch', '--dir', A, 'app@1.1', '--out', join(dir, 'out', '1.1')],
      'debug',
    );
    expect(a2.json.source).toEqual([`127.0.0.1-${dp}`]);
    const rebuilt = a2.log.find((l) => l.msg === 'manifest rebuilt from a delta');
    expect(rebuilt).toBeDefined();
    expect(rebuilt.wireBytes).toBeLessThan(rebuilt.length / 10);
    expect(readFileSync(join(dir, 'out', '1.1')).equals(v2)).toBe(true);
  }, 240_000);
});
