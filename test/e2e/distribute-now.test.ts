import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { demoBytes, scatterEdits } from '../../cli/demo/demo.js';
import {
  enrollDepot,
  freePort,
  runJson,
  startService,
  waitForHttps,
  type Service,
} from '../../cli/demo/processes.js';
import { depotStatus } from '../../depot/status.js';

/** The generation a server's public /healthz reports. */
function healthGeneration(url: string): Promise<number | null> {
  return new Promise((resolve) => {
    const req = https.get(`${url}/healthz`, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        try {
          resolve(
            (JSON.parse(Buffer.concat(parts).toString('utf8')) as { generation: number | null }).generation,
          );
        } catch {
          resolve(null);
        }
      });
    });
    req.on('error', () => resolve(null));
    req.on('timeout', () => req.destroy());
  });
}

/** Poll until a condition holds (a generous deadline, not a timed assertion). */
async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sync only on demand from now on: an interval of an hour, no jitter. */
function longInterval(depotDir: string): void {
  const path = join(depotDir, 'depot.json');
  const config = JSON.parse(readFileSync(path, 'utf8'));
  config.schedule = { ...config.schedule, intervalMs: 3_600_000, jitterMs: 0 };
  writeFileSync(path, JSON.stringify(config, null, 2));
}

const newestRun = async (dir: string) => (await depotStatus(dir)).runs[0]?.startedAt ?? '';

/**
 * End to end with separate processes: a master, depot-a below it and depot-b below
 * depot-a, both with an interval of one hour. A `master publish` reaches both within seconds through
 * the event streams; `master notify` makes them sync (depot-b through depot-a's relay).
 */
describe('distribute now (separate processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'depotsync-notify-e2e-'));
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('depots with a one-hour interval serve a new publish within seconds, and sync on master notify', async () => {
    const M = join(dir, 'master');
    const DA = join(dir, 'depot-a');
    const DB = join(dir, 'depot-b');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    const v1 = demoBytes(1024 * 1024);
    writeFileSync(join(dir, 'v1.bin'), v1);
    runJson(['master', 'publish', '--dir', M, '--name', 'setup', '--version', '1.0', join(dir, 'v1.bin')]);

    const [mp, ap, bp] = [await freePort(), await freePort(), await freePort()];
    const masterUrl = `https://127.0.0.1:${mp}`;
    const [urlA, urlB] = [`https://127.0.0.1:${ap}`, `https://127.0.0.1:${bp}`];
    services.push(startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${mp}`]));
    await waitForHttps(masterUrl);

    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: DA, name: 'depot-a', port: ap });
    longInterval(DA);
    services.push(startService('depot-a', ['depot', 'serve', '--dir', DA]));
    await waitForHttps(urlA);
    const g1 = await healthGeneration(masterUrl);
    await until('depot-a serving the first generation', async () => (await healthGeneration(urlA)) === g1);

    enrollDepot({ master: M, masterUrl, fingerprint: fp, dir: DB, name: 'depot-b', port: bp, parent: urlA });
    longInterval(DB);
    services.push(startService('depot-b', ['depot', 'serve', '--dir', DB]));
    await waitForHttps(urlB);
    await until('depot-b serving the first generation', async () => (await healthGeneration(urlB)) === g1);

    // A publish by another process: both depots (one of them tiered) follow without waiting an hour.
    writeFileSync(join(dir, 'v2.bin'), scatterEdits(v1, 10, 4096));
    const g2 = runJson([
      'master',
      'publish',
      '--dir',
      M,
      '--name',
      'setup',
      '--version',
      '1.1',
      join(dir, 'v2.bin'),
    ]).generation as number;
    expect(g2).toBeGreaterThan(g1!);
    await until('depot-a at the published generation', async () => (await healthGeneration(urlA)) === g2);
    await until(
      'depot-b at the published generation (from depot-a)',
      async () => (await healthGeneration(urlB)) === g2,
    );

    // master notify: every depot syncs now (depot-b hears it relayed by depot-a).
    const [a0, b0] = [await newestRun(DA), await newestRun(DB)];
    expect(runJson(['master', 'notify', '--dir', M])).toMatchObject({ depot: null });
    await until('depot-a ran a sync', async () => (await newestRun(DA)) > a0);
    await until('depot-b ran a sync', async () => (await newestRun(DB)) > b0);

    // One depot by name: depot-b (below depot-a).
    const b1 = await newestRun(DB);
    expect(runJson(['master', 'notify', '--dir', M, '--depot', 'depot-b'])).toMatchObject({
      depot: 'depot-b',
    });
    await until('depot-b ran a sync', async () => (await newestRun(DB)) > b1);
  }, 180_000);
});
