import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
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
import { pseudoRandomBytes, rebuiltBuild } from '../helpers/tmp.js';

const deltaEntries = (dir: string): number =>
  existsSync(dir) ? readdirSync(dir).reduce((n, d) => n + readdirSync(join(dir, d)).length, 0) : 0;

/**
 * Version deltas with real processes: the serving master computes zstd deltas of a new build in the
 * background; depot-a syncs it as deltas against the old build it holds and keeps them; depot-b, below
 * depot-a, gets the same deltas from depot-a (which computes nothing); `master export --from` writes
 * them into a bundle.
 */
describe('version deltas (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-vdelta-e2e-'));
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('a rebuilt executable travels master → depot → child depot as zstd deltas, and into a bundle', async () => {
    const M = join(dir, 'master');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    // A fast level at normal priority keeps the test short on a loaded machine (at the defaults, level 19
    // at nice 19, the flow is the same, but the workers get only CPU time nothing else wants).
    const config = join(M, 'master.json');
    writeFileSync(
      config,
      JSON.stringify({ ...JSON.parse(readFileSync(config, 'utf8')), deltaLevel: 3, deltaNice: 0 }),
    );
    const v1 = pseudoRandomBytes(3 * 1024 * 1024, 1);
    const v2 = rebuiltBuild(v1, { seed: 3, edits: 400 });
    writeFileSync(join(dir, 'v1.bin'), v1);
    writeFileSync(join(dir, 'v2.bin'), v2);
    runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '1', join(dir, 'v1.bin')]);
    const [mp, ap] = [await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);

    const DA = join(dir, 'depot-a');
    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: DA, name: 'depot-a', port: ap });
    runJson(['depot', 'sync', '--dir', DA]);
    services.push(startService('depot-a', ['depot', 'serve', '--dir', DA]));
    await waitForHttps(`https://127.0.0.1:${ap}`);
    const DB = join(dir, 'depot-b');
    enrollDepot({
      master: M,
      masterUrl,
      fingerprint: fp,
      dir: DB,
      name: 'depot-b',
      port: 0,
      parent: `https://127.0.0.1:${ap}`,
    });
    const first = runJson(['depot', 'sync', '--dir', DB]);
    expect(first.bytesFetched).toBeGreaterThan(v1.length);

    // The new build; the serving master computes its deltas in the background.
    const pub = runJson([
      'master',
      'publish',
      '--dir',
      M,
      '--name',
      'tool',
      '--version',
      '2',
      join(dir, 'v2.bin'),
    ]);
    const generation = pub.generation as number;
    let status: { missing: number; cached: number } = { missing: 1, cached: 0 };
    for (let i = 0; i < 120 && status.missing > 0; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      status = runJson(['master', 'deltas', '--dir', M]);
    }
    expect(status.missing).toBe(0);
    expect(status.cached).toBeGreaterThan(10);
    expect(deltaEntries(join(M, 'deltas'))).toBeGreaterThan(10);

    // depot-a: the 3 MiB of new chunks as a few kB of deltas, kept for its children.
    const a = runJson(['depot', 'sync', '--dir', DA]);
    expect(a.generation).toBe(generation);
    expect(a.bytesFetched).toBeLessThan(v2.length / 20);
    expect(deltaEntries(join(DA, 'deltas'))).toBeGreaterThan(10);

    // depot-b below depot-a: the same deltas, served from depot-a's copy.
    const b = runJson(['depot', 'sync', '--dir', DB]);
    expect(b.generation).toBe(generation);
    expect(b.bytesFetched).toBeLessThan(v2.length / 20);
    expect(deltaEntries(join(DB, 'deltas'))).toBeGreaterThan(10);

    // A bundle from generation `generation - 1` carries the same deltas.
    const bundle = runJson([
      'master',
      'export',
      '--dir',
      M,
      '--depot',
      'depot-b',
      '--from',
      String(generation - 1),
      '--out',
      join(dir, 'delta.bundle'),
    ]);
    expect(bundle.deltaChunks).toBeGreaterThan(10);
    expect(bundle.bytes).toBeLessThan(v2.length / 10);
  }, 240_000);
});
