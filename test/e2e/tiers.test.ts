import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

/**
 * Tiers with real processes: depot-b syncs from depot-a. Each depot's status report
 * names its upstream as the upstream's TLS certificate names it, and the master's status shows
 * depot-a at tier 1 and depot-b at tier 2 below depot-a.
 */
describe('depot tiers (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-tiers-e2e-'));
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('a depot below another depot reports it as its upstream; the master shows tier 2', async () => {
    const M = join(dir, 'master');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    writeFileSync(join(dir, 'v1.bin'), Buffer.alloc(300_000, 7));
    runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.0', join(dir, 'v1.bin')]);
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
    expect(runJson(['depot', 'sync', '--dir', DB]).generation).toBe(2);

    const status = runJson(['status', '--dir', M]);
    const by = Object.fromEntries(
      (
        status.depots as Array<{
          name: string;
          tier: number;
          parent: string | null;
          tierProblem: string | null;
        }>
      ).map((d) => [d.name, d]),
    );
    expect(by['depot-a']).toMatchObject({ tier: 1, parent: null, tierProblem: null });
    expect(by['depot-b']).toMatchObject({
      tier: 2,
      parent: 'depot-a',
      tierProblem: null,
      servedGeneration: 2,
    });
  }, 120_000);
});
