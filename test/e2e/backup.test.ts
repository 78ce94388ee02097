import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, runJson, startService, waitForHttps, type Service } from '../../cli/demo/processes.js';
import { runCli } from '../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';

/**
 * With real processes: an online backup while the master serves, a restore refused
 * while it serves, then restore, serve again, publish, and a depot enrolled before the backup syncs on.
 */
describe('master database backup and restore (separate processes)', () => {
  const tmp = tempDir('depotsync-backup-e2e-');
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    tmp.cleanup();
  });

  it('backs up while serving, refuses to restore under a running master, restores, serves, and a depot syncs on', async () => {
    const M = join(tmp.dir, 'M');
    const D = join(tmp.dir, 'D');
    const fp = runJson(['master', 'init', '--dir', M]).fingerprint as string;
    writeFileSync(join(tmp.dir, 'v1.bin'), pseudoRandomBytes(300_000, 11));
    runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '1', join(tmp.dir, 'v1.bin')]);
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const lines: string[] = [];
    const serve = () => {
      const s = startService('master', ['master', 'serve', '--dir', M, '--listen', `127.0.0.1:${port}`], {
        log: (l) => lines.push(l),
      });
      services.push(s);
      return s;
    };
    let master = serve();
    await waitForHttps(url);
    const token = runJson(['master', 'token', '--dir', M, '--role', 'depot']).token as string;
    runJson([
      'depot',
      'init',
      '--dir',
      D,
      '--master',
      url,
      '--fingerprint',
      fp,
      '--token',
      token,
      '--name',
      'depot-1',
    ]);
    expect(runJson(['depot', 'sync', '--dir', D]).generation).toBe(2);

    // Online backup from another process while the master serves.
    const backup = runCli(['master', 'backup', '--dir', M, '--json']);
    expect(backup.status).toBe(0);
    expect(backup.json.file).toMatch(/backups\/master-\d{8}T\d{9}Z\.db$/);
    expect(backup.json.bytes).toBeGreaterThan(0);

    // Refused while serving: one clear line, nothing changed.
    const refused = runCli(['master', 'restore', '--dir', M, backup.json.file]);
    expect(refused.status).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/is in use: serve by process \d+.*stop `depotsync master serve` first/);

    // Stop, restore, serve again.
    await master.stop();
    const restored = runCli(['master', 'restore', '--dir', M, backup.json.file, '--json']);
    expect(restored.status).toBe(0);
    expect(existsSync(join(restored.json.keptAside, 'master.db'))).toBe(true);
    master = serve();
    await waitForHttps(url).catch((e: unknown) =>
      Promise.reject(new Error(`${(e as Error).message}; the master said: ${lines.slice(-5).join(' | ')}`)),
    );

    // The restored master publishes on, and the depot (enrolled before the backup) syncs on.
    writeFileSync(join(tmp.dir, 'v2.bin'), pseudoRandomBytes(200_000, 12));
    expect(
      runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '2', join(tmp.dir, 'v2.bin')])
        .generation,
    ).toBe(3);
    expect(runJson(['depot', 'sync', '--dir', D])).toMatchObject({ generation: 3 });
  }, 120_000);
});
