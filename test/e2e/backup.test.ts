import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, runJson, startService, waitForHttps, type Service } from '../../cli/demo/processes.js';
import { runCli } from '../helpers/cli.js';
import { pseudoRandomBytes, tempDir } from '../helpers/tmp.js';

/**
 * With real processes: an encrypted backup while the master serves, a restore refused while it serves,
 * into a folder that is not empty and with a wrong passphrase; then a restore into a new folder, serve
 * it, publish, and a depot enrolled before the backup syncs on.
 */
describe('master database backup and restore (separate processes)', () => {
  const tmp = tempDir('depotsync-backup-e2e-');
  const services: Service[] = [];
  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop()));
    tmp.cleanup();
  });

  it('backs up while serving, refuses to restore under a running master, restores, serves, and a depot syncs on', async () => {
    let M = join(tmp.dir, 'M');
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

    // Online backup from another process while the master serves; the passphrase from a file.
    const pass = join(tmp.dir, 'passphrase');
    writeFileSync(pass, 'a backup passphrase\n', { mode: 0o600 });
    const backup = runCli(['master', 'backup', '--dir', M, '--passphrase-file', pass, '--json']);
    expect(backup.status, backup.stderr).toBe(0);
    expect(backup.json.file).toMatch(/backups\/master-\d{8}T\d{9}Z\.dsbackup$/);
    expect(backup.json.bytes).toBeGreaterThan(300_000);
    // Never from the command line.
    const argv = runCli(['master', 'backup', '--dir', M, '--passphrase', 'x']);
    expect(argv.status).toBe(2);
    // Without a passphrase: one clear line.
    const none = runCli(['master', 'backup', '--dir', M], { env: { DEPOTSYNC_BACKUP_PASSPHRASE: '' } });
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(
      /no backup passphrase: give --passphrase-file FILE or set DEPOTSYNC_BACKUP_PASSPHRASE/,
    );

    // Refused while serving, and into a folder that is not empty: one clear line each, nothing changed.
    const refused = runCli(['master', 'restore', '--dir', M, '--passphrase-file', pass, backup.json.file]);
    expect(refused.status).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/is in use: serve by process \d+/);
    await master.stop();
    const nonEmpty = runCli(['master', 'restore', '--dir', M, '--passphrase-file', pass, backup.json.file]);
    expect(nonEmpty.status).toBe(1);
    expect(nonEmpty.stderr).toMatch(/is not empty; a restore goes into a new or empty folder/);
    // A wrong passphrase writes nothing.
    const wrong = runCli(['master', 'restore', '--dir', join(tmp.dir, 'W'), backup.json.file], {
      env: { DEPOTSYNC_BACKUP_PASSPHRASE: 'not the right passphrase' },
    });
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/wrong passphrase/);
    expect(existsSync(join(tmp.dir, 'W'))).toBe(false);

    // Restore into a new folder and serve it at the same address.
    const M2 = join(tmp.dir, 'M2');
    const restored = runCli([
      'master',
      'restore',
      '--dir',
      M2,
      '--passphrase-file',
      pass,
      '--fingerprint',
      fp,
      backup.json.file,
      '--json',
    ]);
    expect(restored.status, restored.stderr).toBe(0);
    M = M2;
    master = serve();
    await waitForHttps(url).catch((e: unknown) =>
      Promise.reject(new Error(`${(e as Error).message}; the master said: ${lines.slice(-5).join(' | ')}`)),
    );

    // The restored master publishes on, and the depot (enrolled before the backup) syncs on.
    writeFileSync(join(tmp.dir, 'v2.bin'), pseudoRandomBytes(200_000, 12));
    expect(
      runJson(['master', 'publish', '--dir', M, '--name', 'tool', '--version', '2', join(tmp.dir, 'v2.bin')])
        .generation,
    ).toBe(1_000_003);
    expect(runJson(['depot', 'sync', '--dir', D])).toMatchObject({ generation: 1_000_003 });
  }, 120_000);
});
